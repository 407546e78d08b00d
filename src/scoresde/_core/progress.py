"""Progress reports that fit a log file: a tqdm bar on a terminal, a line now and then otherwise.

A bar redraws itself with carriage returns; written to a file (``> log.txt``, a batch job, CI)
every redraw stays, and a long run's log grows to megabytes.  :class:`Progress` therefore
draws a tqdm bar only when its stream is a terminal and otherwise prints one plain line every
``every_steps`` steps or ``every_seconds`` seconds (whichever comes first), plus one at the end:

    sample: 40/100 (40%) 3.21 it/s elapsed 0:12 eta 0:18 nfe=41

``mode`` chooses: ``"auto"`` (bar on a terminal, lines otherwise), ``"bar"``, ``"log"`` or
``"off"``; ``True`` means ``"auto"`` and ``False`` means ``"off"``.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

__all__ = ["PROGRESS_MODES", "Progress", "make_progress"]

PROGRESS_MODES = ("auto", "bar", "log", "off")


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


class Progress:
    """Progress of a job of ``total`` units (steps, samples, or a fraction with ``total=1.0``).

    Args:
        total: the amount of work (``None``: unknown, no percentage or ETA).
        desc: a label at the start of every line.
        mode: ``auto``, ``bar``, ``log``, ``off`` (or ``True`` / ``False``).
        every_steps: in log mode, print after this many units (``None``: only by time).
        every_seconds: in log mode, print at least this often.
        stream: where to write (default ``sys.stderr``).
        unit: the rate's unit (``it``, ``img``, ...).
        initial: the amount already done (a resumed job).
        time_limit: a wall-time budget in seconds that may end the job before ``total``
            (``train --minutes``): the ETA is the sooner of the two, and the report says so.
    """

    def __init__(
        self,
        total: float | None = None,
        desc: str = "",
        mode: str | bool = "auto",
        every_steps: float | None = None,
        every_seconds: float = 30.0,
        stream: IO[str] | None = None,
        unit: str = "it",
        initial: float = 0,
        time_limit: float | None = None,
    ) -> None:
        if mode is True:
            mode = "auto"
        elif mode is False:
            mode = "off"
        if mode not in PROGRESS_MODES:
            raise ValueError(f"unknown progress mode {mode!r}; choose one of {list(PROGRESS_MODES)}")
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if callable(isatty) and isatty() else "log"
        self.mode = mode
        self.total, self.desc, self.unit = total, desc, unit
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.time_limit = time_limit
        self.n = self.initial = initial
        self.postfix: dict[str, Any] = {}
        self.start = self._last_time = time.perf_counter()
        self._last_n = initial
        self._closed = False
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=desc, file=self.stream, dynamic_ncols=True, leave=False
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the rate (e.g. ``loss=0.12``, ``nfe=40``)."""
        self.postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix(**self.postfix, refresh=False)

    def update(self, n: float = 1, **postfix: Any) -> None:
        """Advance by ``n`` units."""
        if self.mode == "off":  # nothing to show: count (every sampler step comes through here)
            if postfix:
                self.postfix.update(postfix)
            self.n += n
            return
        self.update_to(self.n + n, **postfix)

    def update_to(self, value: float, **postfix: Any) -> None:
        """Set the amount done to ``value`` (for work measured as a fraction or a time)."""
        if postfix:
            self.set_postfix(**postfix)
        delta, self.n = value - self.n, value
        if self.mode == "off":
            return
        if self._bar is not None:
            if self.time_limit is not None:
                left = self.time_limit - (time.perf_counter() - self.start)
                self._bar.set_postfix(**self.postfix, budget_left=_clock(max(0.0, left)), refresh=False)
            self._bar.update(delta)
            return
        now = time.perf_counter()
        by_steps = self.every_steps is not None and self.n - self._last_n >= self.every_steps
        if by_steps or now - self._last_time >= self.every_seconds:
            self._write(now)

    def line(self, now: float | None = None) -> str:
        """The current report as one line."""
        now = time.perf_counter() if now is None else now
        elapsed = now - self.start
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else float("nan")
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            text = f"{head}{_number(self.n)}/{_number(self.total)} ({100 * self.n / self.total:.0f}%)"
            tail = f" elapsed {_clock(elapsed)} eta {_clock(eta)}"
            left = float("inf") if self.time_limit is None else max(0.0, self.time_limit - elapsed)
            if left < eta:
                tail = f" elapsed {_clock(elapsed)} eta {_clock(left)} (time budget)"
        else:
            text, tail = f"{head}{_number(self.n)}", f" elapsed {_clock(elapsed)}"
        text += f" {rate:.3g} {self.unit}/s" if math.isfinite(rate) else ""
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        return text + tail + (f" {extra}" if extra else "")

    def _write(self, now: float) -> None:
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()
        self._last_time, self._last_n = now, self.n

    def close(self) -> None:
        """Finish: close the bar, or print the final line (if anything was done since the last)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log" and self.n != self._last_n:
            self._write(time.perf_counter())


def make_progress(
    progress: bool | str | Progress | None, total: float | None, desc: str, **kwargs: Any
) -> Progress:
    """A :class:`Progress` from a library function's ``progress`` argument (``None`` = off).

    An existing :class:`Progress` is returned as it is (the caller owns it).
    """
    if isinstance(progress, Progress):
        return progress
    if total and "every_steps" not in kwargs:
        kwargs["every_steps"] = total / 10  # in log mode: about ten lines per job
    return Progress(total, desc, mode=progress if progress is not None else "off", **kwargs)
