"""Process-wide CPU runtime settings, applied by the entry points (CLI, TorchServe handler, benchmark),
never at import: a library must not change its host process behind its back.

glibc's default malloc serves every block over its mmap threshold (≤ 32 MB) with a fresh mmap and
returns it on free, so each of FP-LIIF's multi-MB activations is page-faulted in again on every
forward pass — about 20 % of the encoder's time on this 2-core machine. Keeping large blocks in the
heap lets them be reused, the same effect PyTorch's CPU performance guide gets from jemalloc/tcmalloc.
The cost: the process keeps its peak heap instead of handing it back to the OS."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
DISABLE_ENV = "FACEPARSE_GLIBC_MALLOC_DEFAULTS"  # set to 1 to keep glibc's defaults

_applied: bool | None = None


def own_process() -> None:
    """What an entry point that owns its process applies: the allocator settings and the thread governor."""
    tune_cpu_allocator()
    govern()


def tune_cpu_allocator() -> bool:
    """Keep large allocations in the malloc heap (no per-block mmap, no trimming). Idempotent; returns
    whether the settings are in effect (False off glibc Linux or when DISABLE_ENV=1)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(DISABLE_ENV) == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success
    _applied = bool(mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
                    and mallopt(_M_TOP_PAD, 64 << 20))
    return _applied


THREADS_ENV = "FACEPARSE_THREADS"   # "native": leave OpenMP / torch thread settings as they come


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup v2 CPU quota (containers,
    kfp pods) — torch sizes its pool from the host's cores and over-subscribes a 2-CPU pod on a 64-core node."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def apply_thread_defaults() -> int:
    """Size torch's intra-op pool to the CPUs available (an explicit OMP_NUM_THREADS / torch setting that
    asks for fewer is kept) and start governing it (``tick``); returns the thread count."""
    import torch

    global _governor
    if os.environ.get(THREADS_ENV) == "native":
        return torch.get_num_threads()
    n = min(torch.get_num_threads(), available_cpus())
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    # an explicit OMP_NUM_THREADS pins the count (reproducible float reductions, tests): not governed
    _governor = ThreadGovernor(1 if "OMP_NUM_THREADS" in os.environ else n)
    return n


def pin_threads(n: int) -> None:
    """A fixed thread count for the rest of the process (``train.threads``): the governor stops."""
    import torch

    global _governor, _enabled
    torch.set_num_threads(int(n))
    _governor, _enabled = None, False


def _cpu_sample() -> tuple[float, float, float]:
    """(monotonic s, busy CPU-seconds of the whole machine, CPU-seconds of this process) from /proc."""
    import time

    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)          # all but idle and iowait
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])                     # utime + stime (all our threads)
    return time.monotonic(), busy / hz, own / hz


class ThreadGovernor:
    """Keeps torch's intra-op threads to the cores other processes leave free.

    OpenMP threads wait for each other at every parallel region; when another process holds a core, a
    thread of ours is descheduled for a whole time slice and the rest wait for it (spinning, with
    OpenMP's default policy): a 2-thread training step ran 3–17× slower beside one busy process, while
    one thread on the free core loses only the parallel speed-up. Every ``interval`` seconds ``tick`` (called
    by the compute loops between steps; cheap otherwise) measures the others' CPU use from /proc and sets
    the thread count to the free cores (at least 1, at most the count it started with). Linux only."""

    STALE, IDLE = 5.0, 0.5   # a window over STALE intervals in which we used < IDLE cores is not acted on

    def __init__(self, max_threads: int, interval: float = 1.0):
        self.max, self.interval = max(1, int(max_threads)), float(interval)
        try:
            self.last = _cpu_sample()
        except (OSError, ValueError, IndexError):
            self.last = None     # no /proc: nothing to govern

    def free_cores(self, others: float) -> int:
        """Threads for a machine where other processes use ``others`` cores (a 0.3-core margin for noise)."""
        import math

        return max(1, min(self.max, math.floor(self.max - others + 0.3)))

    def tick(self) -> None:
        import time

        if self.max == 1 or self.last is None or time.monotonic() - self.last[0] < self.interval:
            return
        now = _cpu_sample()
        wall, busy, own = (b - a for a, b in zip(self.last, now))
        self.last = now
        if wall > self.STALE * self.interval and own < self.IDLE * wall:
            # idle for most of a long window (a server between requests): it says what the machine did while
            # we waited, not now; keep the threads and judge from the next, fresh window. Measured: a TorchServe
            # worker idle beside a 2-thread job ran its next request on 1 thread (2.2 s → 4.7 s). A long
            # compute step (own CPU ≥ IDLE per second) is still judged.
            return
        import torch

        n = self.free_cores(max(0.0, busy - own) / wall if wall > 0 else 0.0)
        if n != torch.get_num_threads():
            torch.set_num_threads(n)


_governor: ThreadGovernor | None = None
_enabled = False


def govern() -> None:
    """Called by an entry point that owns its process (CLI, TorchServe worker, torchrun worker, kfp step,
    benchmark): the thread settings apply at the first ``tick``, i.e. once torch is in use, so commands
    that never compute do not import torch for it."""
    global _enabled
    _enabled = True


def tick() -> None:
    """Between compute steps: let the thread governor adjust. A no-op in a process no entry point owns
    (the Python API leaves its host's threads alone) and with FACEPARSE_THREADS=native."""
    if _governor is None:
        if not _enabled or os.environ.get(THREADS_ENV) == "native":
            return
        apply_thread_defaults()
    _governor.tick()
