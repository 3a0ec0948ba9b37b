"""STREAM-like memory bandwidth of this machine, measured with torch kernels (the roofline's basis).

    python bench/stream.py                 # 2 threads, 256 MiB arrays, best of 10
    python bench/stream.py --threads 1 --json

An optimizer step over a model far larger than the caches is a stream: every byte of θ, g and
the state is read once and written once, so the fastest possible step is bytes / bandwidth. This
measures that bandwidth the way an optimizer would see it, with torch's own elementwise kernels on
arrays much larger than the last-level cache (default 256 MiB each):

- ``rmw``   ``a.add_(b, alpha=s)`` in float32: a read-modify-write triad, 12 bytes per element
  (read a, read b, write a). This is the figure used for rooflines (``bench/torch_cpu.py``).
- ``copy``  ``b.copy_(a)`` in float32: 8 bytes per element.
- ``lerp``  ``m.lerp_(g, w)`` in float32 (the momentum update of Lion): 12 bytes per element.
- ``rmw_bf16``  the ``rmw`` triad on bfloat16 arrays: 6 bytes per element. On a CPU without native
  bf16 arithmetic each element is converted to float32 and back, so this shows whether the
  conversions, not memory, limit 16-bit kernels.

Bytes count what the kernel must move (no write-allocate traffic), as STREAM does. Reported: the
best (STREAM's convention: the machine's capability) and the median of ``--repeats`` timed runs
after one warm-up, in GB/s (10⁹ bytes per second). On a shared machine a run can lose a core to
another process: the best is taken among the runs whose process CPU time was ≥ 90% of wall time ×
threads (counted as "full-CPU runs"). Nothing here is an assertion.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

#: a repetition whose process CPU time is below this share of wall time × threads lost a core to
#: another process; its bandwidth says nothing about memory
FULL_CPU = 0.9


def _time(fn: Callable[[], object], repeats: int) -> list[tuple[float, float]]:
    """(seconds, CPU share) of each of ``repeats`` calls after one warm-up call."""
    fn()  # warm-up: first-touch page faults are not bandwidth
    threads = torch.get_num_threads()
    out = []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
        out.append((wall, (time.process_time() - c0) / (wall * threads)))
    return out


def _summary(runs: list[tuple[float, float]], nbytes: int) -> dict[str, float]:
    """Best and median GB/s, preferring repetitions that had the whole CPU."""
    full = [r for r in runs if r[1] >= FULL_CPU] or runs
    best = min(full)
    return {"best": nbytes / best[0] / 1e9,
            "median": nbytes / statistics.median(t for t, _ in runs) / 1e9,
            "cpu": best[1], "full_cpu_runs": sum(r[1] >= FULL_CPU for r in runs)}


def rmw_bandwidth(mib: int = 256, repeats: int = 5) -> dict[str, float]:
    """The float32 ``rmw`` triad alone with torch's current thread count (quick): see _summary."""
    n = mib * 2**20 // 4
    a, b = torch.empty(n).fill_(1.0), torch.empty(n).fill_(2.0)
    return _summary(_time(lambda: a.add_(b, alpha=1e-9), repeats), 12 * n)


def measure_bandwidth(threads: int = 2, mib: int = 256, repeats: int = 10) -> dict[str, dict]:
    """Each kernel's ``{"best", "median": GB/s, "cpu", "full_cpu_runs", "bytes_per_element"}``.

    ``best`` is the fastest repetition among those with the whole CPU (process CPU time ≥ 90% of
    wall time × threads), or of all if none had it; ``cpu`` is that repetition's share.
    """
    torch.set_num_threads(threads)
    n = mib * 2**20 // 4
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, generator=gen), torch.rand(n, generator=gen)
    c = torch.empty(n)
    kernels: list[tuple[str, int, Callable[[], object]]] = [
        ("rmw", 12, lambda: a.add_(b, alpha=1e-9)),
        ("copy", 8, lambda: c.copy_(a)),
        ("lerp", 12, lambda: a.lerp_(b, 1e-3)),
    ]
    a16, b16 = a.to(torch.bfloat16), b.to(torch.bfloat16)
    kernels.append(("rmw_bf16", 6, lambda: a16.add_(b16, alpha=1e-3)))
    return {name: {**_summary(_time(fn, repeats), per_element * n),
                   "bytes_per_element": per_element}
            for name, per_element, fn in kernels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--mib", type=int, default=256, help="MiB per array (default 256)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per kernel")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.mib < 1 or args.repeats < 1:
        parser.error("--threads, --mib and --repeats must be >= 1")
    result = measure_bandwidth(args.threads, args.mib, args.repeats)
    if args.json:
        print(json.dumps({"threads": args.threads, "mib": args.mib, "repeats": args.repeats,
                          "loadavg": os.getloadavg()[0], "kernels": result}))
        return 0
    print(f"STREAM-like bandwidth: torch {torch.__version__}, {args.threads} threads, "
          f"{args.mib} MiB arrays, best and median of {args.repeats} (load average "
          f"{os.getloadavg()[0]:.2f})")
    print(f"{'kernel':<9} {'B/elem':>6} {'best GB/s':>9} {'median GB/s':>11} {'full-CPU runs':>13}")
    for name, r in result.items():
        print(f"{name:<9} {r['bytes_per_element']:>6} {r['best']:>9.1f} {r['median']:>11.1f} "
              f"{r['full_cpu_runs']:>10}/{args.repeats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
