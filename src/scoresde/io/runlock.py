"""One process at a time in a run folder: a lock file naming its holder.

:class:`RunLock` creates ``<run>/.lock`` with ``O_CREAT | O_EXCL`` (atomic on local file
systems) holding ``{"pid", "host", "time", "argv"}``.  A second process finds it and is
refused with :class:`RunFolderBusyError`, which names the holder.  A lock left by a process
that died (same host, pid no longer alive) is stale: it is broken by renaming it away (only
one process can win that rename) and taken.  A lock from another host cannot be checked and
is always respected; delete the file by hand if that host's run is gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK_NAME", "RunFolderBusyError", "RunLock", "pid_alive"]

LOCK_NAME = ".lock"


class RunFolderBusyError(RuntimeError):
    """Another live process holds the run folder's lock."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:  # Linux: a zombie (exited, not yet reaped) holds nothing
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """The lock of one run folder; a context manager.

    Args:
        run_dir: the run folder (created if missing).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.held = False

    def holder(self) -> dict | None:
        """The lock file's content, ``{}`` if unreadable, ``None`` if there is no lock."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            info = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return info if isinstance(info, dict) else {}

    def _stale(self, info: dict) -> bool:
        pid, host = info.get("pid"), info.get("host")
        if not isinstance(pid, int) or host != socket.gethostname():
            return False
        return pid != os.getpid() and not pid_alive(pid)

    def acquire(self) -> RunLock:
        """Take the lock, breaking a stale one; raise :class:`RunFolderBusyError` if it is held."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv,
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is None:
                    continue  # released meanwhile: try again
                if info and self._stale(info):
                    # Rename, then delete: of several processes breaking it, one wins.
                    aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}.{uuid.uuid4().hex[:8]}")
                    try:
                        os.rename(self.path, aside)
                        aside.unlink(missing_ok=True)
                    except FileNotFoundError:
                        pass
                    continue
                who = (
                    f"process {info.get('pid')} on {info.get('host')} since {info.get('time')}"
                    if info
                    else "an unknown process (the lock file is being written or unreadable)"
                )
                raise RunFolderBusyError(
                    f"the run folder {self.run_dir} is in use by {who} (lock file {self.path}); "
                    "wait for it to finish, choose another name, or delete the lock file if that "
                    "process is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return self
        raise RunFolderBusyError(f"could not take the lock {self.path}: it keeps changing hands")

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if not self.held:
            return
        info = self.holder()
        if info is not None and info.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
