"""Speed and memory of the float64 oracle against a naive NumPy step, at GPT-2-small sizes (124M).

    python bench/oracle_cpu.py                  # full model, 3 repeats
    python bench/oracle_cpu.py --scale 0.1      # a tenth of every tensor, quicker

For each algorithm the same parameter shapes are stepped by (a) a naive float64 NumPy step, the
formula as written with ``np.sign`` (what a hand-written reference in a test suite usually is), and
(b) the oracle (``lionspec.spec``: exact signs, values within two ulps). Reported: median seconds
per step over all tensors, ns per parameter, the ratio oracle/naive, how many elements needed the
exact-rational fallback, and the peak of NumPy allocations during one step (tracemalloc traces
NumPy's data buffers) beyond the inputs. Nothing here is an assertion; it prints numbers.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from _shapes import gpt2_small_shapes  # bench/_shapes.py (bench/ is on sys.path when run)

import lionspec.spec._accurate as accurate
from lionspec.spec import lion_step, signum_step, tiger_step


def naive_lion(p, g, m, lr=1e-4, b1=0.9, b2=0.99, wd=0.1):
    c = b1 * m + (1 - b1) * g
    return p - lr * (np.sign(c) + wd * p), b2 * m + (1 - b2) * g


def naive_signum(p, g, m, lr=1e-4, b=0.9, wd=0.1):
    m = b * m + (1 - b) * g
    return p - lr * (np.sign(m) + wd * p), m


def naive_tiger(p, g, m, role, lr=1e-3, b=0.965, wd=0.01):
    if np.isnan(g).any():
        return p * 0.99 + (0.01 if role == "scale" else 0.0), m
    m = b * m + (1 - b) * g
    if role in ("bias", "scale"):
        eta, wd = lr / 2, 0.0
    elif role == "embedding":
        eta = lr * np.sqrt(np.mean(p * p, axis=-1, keepdims=True))
    else:
        eta = lr * np.sqrt(np.mean(p * p))
    return p - eta * (np.sign(m) + wd * p), m


def oracle(algorithm: str) -> Callable:
    if algorithm == "lion":
        return lambda p, g, m, role: lion_step(p, g, m, lr=1e-4, weight_decay=0.1)
    if algorithm == "signum":
        return lambda p, g, m, role: signum_step(p, g, m, lr=1e-4, weight_decay=0.1)
    return lambda p, g, m, role: tiger_step(p, g, m, step=0, lr=1e-3, role=role)


def naive(algorithm: str) -> Callable:
    if algorithm == "lion":
        return lambda p, g, m, role: naive_lion(p, g, m)
    if algorithm == "signum":
        return lambda p, g, m, role: naive_signum(p, g, m)
    return naive_tiger


def run_step(fn: Callable, tensors) -> None:
    for p, g, m, role in tensors:
        fn(p, g, m, role)


def measure(fn: Callable, tensors, repeats: int) -> tuple[float, int]:
    run_step(fn, tensors)  # warm-up: page faults of fresh buffers are not the algorithm's cost
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_step(fn, tensors)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    run_step(fn, tensors)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of each tensor's rows to keep (default 1.0: the full model)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--algorithms", nargs="+", default=["lion", "signum", "tiger"],
                        choices=["lion", "signum", "tiger"])
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    rng = np.random.default_rng(0)
    tensors = []
    for _, shape, role in gpt2_small_shapes():
        shape = (max(1, int(shape[0] * args.scale)), *shape[1:])
        p = rng.normal(0.0, 0.02, shape)
        if role == "scale":
            p += 1.0
        tensors.append((p, rng.normal(0.0, 1e-3, shape), rng.normal(0.0, 1e-3, shape), role))
    n = sum(t[0].size for t in tensors)
    print(f"lionspec oracle benchmark: {n:,} float64 parameters in {len(tensors)} tensors "
          f"(GPT-2 small{'' if args.scale == 1 else f' x{args.scale}'}), "
          f"numpy {np.__version__}, python {platform.python_version()}, {platform.machine()}",
          flush=True)
    calls = {"n": 0}
    original = accurate._exact_element

    def counting(*a):
        calls["n"] += 1
        return original(*a)

    accurate._exact_element = counting
    header = (f"{'algorithm':<9} {'naive s/step':>12} {'oracle s/step':>13} {'ratio':>6} "
              f"{'ns/param':>9} {'exact fallbacks':>15} {'peak MiB naive':>14} "
              f"{'peak MiB oracle':>15}")
    print(header)
    for algorithm in args.algorithms:
        t_naive, m_naive = measure(naive(algorithm), tensors, args.repeats)
        calls["n"] = 0
        t_oracle, m_oracle = measure(oracle(algorithm), tensors, args.repeats)
        fallbacks = calls["n"] // (args.repeats + 2)
        print(f"{algorithm:<9} {t_naive:>12.3f} {t_oracle:>13.3f} {t_oracle / t_naive:>6.1f} "
              f"{t_oracle / n * 1e9:>9.1f} {fallbacks:>15,} {m_naive / 2**20:>14.0f} "
              f"{m_oracle / 2**20:>15.0f}", flush=True)
    accurate._exact_element = original
    return 0


if __name__ == "__main__":
    sys.exit(main())
