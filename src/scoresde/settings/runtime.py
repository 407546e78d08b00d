"""CPU threads that survive other load: a passive OpenMP wait policy and a thread count from the
cores that are free.

torch runs its CPU kernels on an OpenMP team of one thread per core.  By default GNU OpenMP's
idle threads spin at the end of each parallel region; with another job on one of the cores,
the team's thread there is time-sliced against it while its partner spins, and every region
waits for a scheduler slice: measured on a shared 2-core machine, the spinning default ran
training, sampling and likelihood 3-14x slower than a passive policy (docs/bench_speed.md,
"threads under load").  Two cures, both applied by the CLI:

- :func:`quiet_openmp`: ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep and are woken; a
  sleeping thread regains its core at once) with ``GOMP_SPINCOUNT=0`` / ``KMP_BLOCKTIME=0``
  for the GNU and Intel runtimes.  OpenMP reads them when torch is imported, so this must run
  before ``import torch``; the CLI entry does, and keeps any value the user set.
- :func:`auto_threads`: ``--threads 0`` (the default) uses the cores of this process's
  affinity set that other processes leave free (from the run queue, :func:`busy_cores`), at
  least 1.

This module imports nothing heavy (no torch), so the CLI can call it first.
"""

from __future__ import annotations

import os
import time

__all__ = ["PASSIVE_OPENMP", "auto_threads", "available_cores", "busy_cores", "quiet_openmp"]

PASSIVE_OPENMP: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"}
"""The environment of a passive OpenMP wait policy (GNU libgomp and Intel's runtime)."""


def quiet_openmp(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set :data:`PASSIVE_OPENMP` in ``environ`` (``os.environ``) where the user set nothing.

    Must run before torch is imported to take effect (OpenMP reads its settings once).
    ``SCORESDE_OMP_ACTIVE=1`` leaves the environment alone (OpenMP's spinning default, a few
    percent faster on a machine that is certainly idle).  Returns the values it set.
    """
    env = os.environ if environ is None else environ
    if env.get("SCORESDE_OMP_ACTIVE", "") not in ("", "0"):
        return {}
    if "OMP_WAIT_POLICY" in env:  # the user chose a policy: keep it and its spin settings
        return {}
    added = {k: v for k, v in PASSIVE_OPENMP.items() if k not in env}
    env.update(added)
    return added


def available_cores() -> int:
    """The cores this process may run on (its affinity set; ``os.cpu_count()`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _running() -> int | None:
    """Runnable tasks machine-wide now (``procs_running`` of ``/proc/stat``), this one included."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def busy_cores(samples: int = 5, interval: float = 0.01) -> float:
    """How many cores other processes keep busy: the median of ``samples`` readings of the run
    queue (``/proc/stat``, this process not counted) over ``samples * interval`` seconds; the
    1-minute load average where ``/proc`` is missing."""
    counts = []
    for i in range(samples):
        n = _running()
        if n is None:
            break
        counts.append(max(n - 1, 0))
        if i + 1 < samples:
            time.sleep(interval)
    if counts:
        return float(sorted(counts)[len(counts) // 2])
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def auto_threads(cores: int | None = None, busy: float | None = None) -> int:
    """The thread count of ``--threads 0``: the cores of the affinity set that others leave
    free, at least 1 (``cores`` and ``busy`` default to :func:`available_cores` and
    :func:`busy_cores`; the run queue counts the whole machine, so on a large machine with
    few cores allowed this is cautious).

    ``SCORESDE_THREADS=N`` overrides it, then an explicit ``OMP_NUM_THREADS=N`` (torchrun sets 1
    for each of several processes); under torchrun the free cores are shared by the processes of
    this node (``LOCAL_WORLD_SIZE``), so they do not oversubscribe them together.
    """
    for var in ("SCORESDE_THREADS", "OMP_NUM_THREADS"):
        forced = os.environ.get(var, "")
        if forced.strip().isdigit() and int(forced) > 0:
            return int(forced)
    cores = available_cores() if cores is None else cores
    if busy is None:  # the machine's busy cores, spread evenly: the share that falls in our set
        busy = busy_cores() * cores / max(os.cpu_count() or cores, cores)
    local = os.environ.get("LOCAL_WORLD_SIZE", "1")
    procs = int(local) if local.strip().isdigit() and int(local) > 0 else 1
    return max(1, min(cores, cores - round(busy)) // procs)
