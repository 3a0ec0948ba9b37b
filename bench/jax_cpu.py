"""lionspec.impls.jax against optax.lion on CPU: ms per jitted training-step update.

    python bench/jax_cpu.py                      # GPT-2 small (124M parameters), fp32 and bf16
    python bench/jax_cpu.py --scale 0.25         # a quarter of every tensor, for a quick look
    python bench/jax_cpu.py --configs fp32 --repeats 9

Method. Every candidate steps the same 148 parameter tensors of GPT-2 small (``bench/_shapes.py``)
with fixed random gradients, weight decay > 0, through the same jitted step::

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

compiled once per (candidate, configuration, donation), with ``donate_argnums=(0, 1)`` (params and
optimizer state updated in place) or without donation. After the first call (compile) and
``--warmup`` calls, the candidates' timed calls are interleaved round-robin (``--repeats`` rounds)
so that a spell of load on a shared host hits all of them alike; the median is reported, with
the process CPU time over the timed calls as a share of wall time × cores (< 90% / cores used:
another process took CPU). Configurations: ``fp32`` (fp32 θ, gradients, momentum) and ``bf16``
(bf16 θ, gradients, momentum; optax infers its momentum dtype from θ, ours defaults to θ's).

Candidates: ``optax.lion`` (the reference), ``lionspec lion``, and for information ``lionspec
signum`` and ``lionspec tiger`` (GPT-2's roles, k = 1; its RMS re-reads θ). ``vs optax.lion`` is
this row's time / optax.lion's in the same configuration and donation (1.00 = equal; the issue's
target is ≤ 1.10 for Lion). Nothing here is an assertion; it prints numbers.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _shapes import scaled_shapes  # bench/_shapes.py (bench/ is on sys.path when run)

LR, WD = 1e-4, 0.1


def make_candidates(roles: dict[str, str]) -> dict[str, Callable[[], Any]]:
    import optax

    from lionspec.impls.jax import lion, signum, tiger

    return {
        "optax.lion": lambda: optax.lion(LR, 0.9, 0.99, weight_decay=WD),
        "lionspec lion": lambda: lion(LR, 0.9, 0.99, weight_decay=WD),
        "lionspec signum": lambda: signum(LR, 0.9, weight_decay=WD),
        "lionspec tiger": lambda: tiger(1e-3, 0.965, weight_decay=0.01, roles=roles),
    }


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of each tensor's rows to keep (default 1.0: the full model)")
    parser.add_argument("--configs", nargs="+", choices=["fp32", "bf16"],
                        default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after the first")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="candidates to run (default: all), e.g. 'optax.lion' 'lionspec lion'")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    shapes = scaled_shapes(args.scale)
    roles = {name: role for name, _, role in shapes}
    candidates = make_candidates(roles)
    if args.only:
        unknown = set(args.only) - set(candidates)
        if unknown:
            parser.error(f"unknown candidates {sorted(unknown)}; names: {list(candidates)}")
        candidates = {k: v for k, v in candidates.items() if k in args.only or k == "optax.lion"}
    n = sum(int(np.prod(s)) for _, s, _ in shapes)
    cores = os.cpu_count() or 1
    print(f"lionspec jax CPU benchmark: {n:,} parameters in {len(shapes)} tensors (GPT-2 small"
          f"{'' if args.scale == 1 else f' x{args.scale}'}), median of {args.repeats} rounds")
    print(f"machine: {platform.machine()}, {cores} cores; python {platform.python_version()}, "
          f"jax {jax.__version__}, jaxlib {importlib.metadata.version('jaxlib')}, "
          f"optax {optax.__version__}; backend {jax.default_backend()}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    rng = np.random.default_rng(0)
    base = {name: rng.normal(0, 0.02, s).astype(np.float32) for name, s, _ in shapes}
    grads32 = {name: rng.normal(0, 1e-3, s).astype(np.float32) for name, s, _ in shapes}
    rows = []
    for config in args.configs:
        dtype = jnp.float32 if config == "fp32" else jnp.bfloat16
        grads = {k: jnp.asarray(v, dtype) for k, v in grads32.items()}
        for donate in (True, False):
            runs: dict[str, dict[str, Any]] = {}
            for name, make in candidates.items():
                opt = make()

                def step(params, state, grads, opt=opt):
                    updates, state = opt.update(grads, state, params)
                    return optax.apply_updates(params, updates), state

                fn = jax.jit(step, donate_argnums=(0, 1) if donate else ())
                params = {k: jnp.asarray(v, dtype) for k, v in base.items()}
                state = opt.init(params)
                t0 = time.perf_counter()
                params, state = jax.block_until_ready(fn(params, state, grads))
                first = time.perf_counter() - t0
                for _ in range(args.warmup):
                    params, state = jax.block_until_ready(fn(params, state, grads))
                runs[name] = {"fn": fn, "params": params, "state": state, "times": [],
                              "cpu": 0.0, "first": first}
            for _ in range(args.repeats):
                for r in runs.values():
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    r["params"], r["state"] = jax.block_until_ready(
                        r["fn"](r["params"], r["state"], grads))
                    r["times"].append(time.perf_counter() - t0)
                    r["cpu"] += cpu_seconds() - c0
            ref = statistics.median(runs["optax.lion"]["times"])
            for name, r in runs.items():
                med = statistics.median(r["times"])
                rows.append((config, "yes" if donate else "no", name, 1e3 * med,
                             1e3 * min(r["times"]), 1e3 * r["first"], med / ref,
                             r["cpu"] / sum(r["times"]) / cores))
                print(f"  {config} donate={'yes' if donate else 'no ':<3} {name:<16} "
                      f"{1e3 * med:8.1f} ms/step (min {1e3 * min(r['times']):.1f}, first "
                      f"{1e3 * r['first']:,.0f} ms)  vs optax.lion {med / ref:.3f}", flush=True)
            del runs
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}\n")
    header = ("config", "donated", "candidate", "ms/step", "min ms", "first ms",
              "vs optax.lion", "cpu share")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for c, d, name, med, mn, first, ratio, share in rows:
        print(f"| {c} | {d} | {name} | {med:,.1f} | {mn:,.1f} | {first:,.0f} | {ratio:.3f} | "
              f"{share:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
