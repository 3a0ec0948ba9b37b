"""Lion, Tiger and SIGNUM optimizers for torch on CPU, side by side, against the memory roofline.

    python bench/torch_cpu.py                        # GPT-2 small (124M), 2 threads, ~10 minutes
    python bench/torch_cpu.py --scale 0.25           # a quarter of every tensor, for a quick look
    python bench/torch_cpu.py --only 'ours-*' lion-pytorch --configs fp32
    python bench/torch_cpu.py --list                 # the candidates' names (--all adds extras)
    python bench/torch_cpu.py --rounds 3 --only 'ours-lion-*' lion-pytorch   # ratios per round

Method. Every candidate steps the same 148 parameter tensors of GPT-2 small (``bench/_shapes.py``)
with the same fixed random gradients (generated from ``--seed`` in each worker), weight decay > 0,
``--threads`` torch threads (default 2). Each (candidate, configuration) row runs in its own
subprocess with a timeout, so a crash, a missing package or a compile cache cannot affect another
row, and peak memory is separable. In the worker: the first ``step()`` is timed on its own (it
allocates the state and, for compiled paths, compiles), then ``--warmup`` steps, then
``--repeats`` timed steps (fewer if they pass ``--max-timed-s``, at least 3) whose median is
reported. The compile caches (inductor's, and lionspec's native kernel cache,
``LIONSPEC_CACHE_DIR``) are directories made for this run (``--inductor-cache DIR`` to keep one
for both), so a compiled row's first process compiles cold; compiled rows always run a second
process, whose first step shows the cost with the compile cache warm (a restarted job).

Shared machines. The process CPU time over the timed steps, as a share of wall time × threads,
tells whether another process took a core (< 90%: "contended"; OpenMP kernels then slow down far
more than 2×, as every parallel region waits for the descheduled thread). Contended rows are run
again after all rows (``--retries``, default 1), when the spell has a chance to be over; of a
row's runs with the whole CPU the lowest median is kept, else the least contended (marked † in
the table).

Configurations: ``fp32`` (fp32 θ and momentum), ``bf16+fp32m`` (bf16 θ and gradients, fp32
momentum: only optimizers with a momentum-dtype option), ``bf16`` (bf16 θ, gradients, momentum:
the only bf16 mode of the peers).

Roofline. The read-modify-write bandwidth B is measured with the same thread count
(``bench/stream.py``: ``a.add_(b, alpha=s)`` on 256 MiB float32 arrays, best of a few): before
the rows, after them, and in every worker just before its tensors are made and just after its
timed steps. On a shared host B drifts by ±30% over minutes, so each row is held against its own
worker's B (the mean of its two measurements); the run's B, printed with the per-configuration
rooflines, is the median of all uncontended measurements. The least traffic one step can cause
is: read θ, g and each state tensor, write θ and each state tensor. Per parameter: Lion/SIGNUM
fp32 4+4+4 read + 4+4 written = 20 B; bf16 θ with fp32 momentum 2+2+4+2+4 = 14 B; all bf16 10 B;
Tiger adds one read of θ for lr·RMS(θ) on weight and embedding tensors (≈ 24 B fp32); AdamW has
two state tensors (28 B fp32, 14 B bf16). Roofline ms/step = bytes / B. A row above 100% moved its
bytes faster than the 3-stream triad does (a fused kernel with 5 streams can draw more).

Reading the table. ``ms/step``: median step time. ``first ms (warm)``: the first step (state
allocation and any compilation), in parentheses the first step of the second process (warm compile
cache). ``B GB/s``: the row's own bandwidth; ``roofline ms``: bytes / B. ``GB/s``: roofline bytes /
median time, the useful bandwidth; ``%roof``: that as a share of B (100% = at the roofline; the
issue's "1.1× the roofline" is 91%). ``vs lion-pytorch``: lion-pytorch's default time / this time
in the same configuration (2.00× = twice as fast; bf16+fp32m rows are held against the peers' bf16
rows, their only bf16 mode, here and in the next column). ``× best peer``: this time / the fastest
other package's implementation of the same algorithm in the same configuration (< 1 = faster than
every peer). ``state MiB``: bytes held in ``optimizer.state``. ``peak Δ MiB first/steady``:
high-water mark of the resident set (``VmHWM``, reset through ``/proc/self/clear_refs``;
``ru_maxrss`` elsewhere) above the resident set before the optimizer was made, over the first step
/ over the timed steps: state + temporaries (+ the compiler and its code for compiled paths).
``|Δθ|/lr·n``: mean |θ_end − θ_0| / (lr × steps) on a sample of elements, a sanity check that the
step moved the parameters (≈ 1 for Lion/SIGNUM/AdamW with these constant gradients, ≈ RMS(θ) ≈ 0.02
for Tiger's weights). After the table: the best peer per algorithm and the issue's targets with the
measured values. Nothing here is an assertion; it prints numbers.

Rounds. The host's bandwidth drifts by ±30% over minutes, so two rows measured minutes apart can
differ by more than the effect a target asks about. ``--rounds N`` runs every row N times, one
round of all rows after another (compiled rows start a second, warm-cache process in the first
round only); the table keeps each row's fastest uncontended run as before, and each target also
gets its ratio within every round, where the rows compared ran close together, as a median and
range over the rounds (``per round: 1.30× [1.06–1.58×] over 3 rounds``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import gc
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _shapes import scaled_shapes  # bench/_shapes.py (bench/ is on sys.path when run)
from stream import rmw_bandwidth  # bench/stream.py

HERE = Path(__file__).resolve().parent

LION = {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.1}
SIGNUM = {"lr": 1e-4, "momentum": 0.9, "weight_decay": 0.1}
TIGER = {"lr": 1e-3, "beta": 0.965, "weight_decay": 0.01}
ADAMW = {"lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 0.1}
LR = {"lion": LION["lr"], "signum": SIGNUM["lr"], "tiger": TIGER["lr"], "adamw": ADAMW["lr"]}


@dataclass(frozen=True)
class Config:
    """Parameter dtype and momentum dtype of one configuration (dtypes by name)."""

    name: str
    param: str
    momentum: str


CONFIGS = {c.name: c for c in (Config("fp32", "float32", "float32"),
                                Config("bf16+fp32m", "bfloat16", "float32"),
                                Config("bf16", "bfloat16", "bfloat16"))}
ALL, OURS_ONLY = ("fp32", "bf16+fp32m", "bf16"), ("fp32", "bf16")


@dataclass(frozen=True)
class Candidate:
    """One optimizer code path; ``name`` is what ``--only`` matches."""

    name: str
    label: str
    package: str          # distribution name, for versions and "not installed"
    algorithm: str        # lion | signum | tiger | adamw
    configs: tuple[str, ...]
    compiles: bool = False
    theta_reread: bool = False  # Tiger's lr·RMS(θ): one more read of θ (weight, embedding)
    default: bool = True        # False: an extra, run only when named (--only) or with --all


CANDIDATES = [
    Candidate("ours-lion-loop", "lionspec Lion foreach=False", "lionspec", "lion", ALL),
    Candidate("ours-lion-foreach", "lionspec Lion foreach=True", "lionspec", "lion", ALL),
    Candidate("ours-lion-fused", "lionspec Lion fused=True", "lionspec", "lion", ALL,
              compiles=True),
    Candidate("ours-tiger-fused", "lionspec Tiger fused=True", "lionspec", "tiger",
              ("fp32", "bf16+fp32m"), compiles=True, theta_reread=True),
    Candidate("ours-tiger-foreach", "lionspec Tiger foreach=True", "lionspec", "tiger",
              ("fp32", "bf16+fp32m"), theta_reread=True),
    Candidate("ours-signum-foreach", "lionspec Signum foreach=True", "lionspec", "signum",
              ("fp32", "bf16+fp32m")),
    Candidate("lion-pytorch", "lion-pytorch Lion (use_triton=False)", "lion-pytorch", "lion",
              OURS_ONLY),
    Candidate("lion-pytorch-foreach", "lion-pytorch foreach.Lion", "lion-pytorch", "lion",
              OURS_ONLY),
    Candidate("timm", "timm Lion (foreach=None: loop on CPU)", "timm", "lion", OURS_ONLY),
    Candidate("timm-foreach", "timm Lion foreach=True", "timm", "lion", ("fp32",),
              default=False),
    Candidate("pyopt-lion", "pytorch-optimizer Lion (foreach)", "pytorch-optimizer", "lion",
              OURS_ONLY),
    Candidate("pyopt-lion-compiled", "pytorch-optimizer Lion _compile_foreach()",
              "pytorch-optimizer", "lion", OURS_ONLY, compiles=True),
    Candidate("pyopt-tiger-compiled", "pytorch-optimizer Tiger _compile_foreach() (no RMS)",
              "pytorch-optimizer", "tiger", ("fp32",), compiles=True, default=False),
    Candidate("pyopt-signum-compiled", "pytorch-optimizer SignSGD _compile_foreach()",
              "pytorch-optimizer", "signum", ("fp32",), compiles=True, default=False),
    Candidate("adamw-foreach", "torch AdamW foreach=True", "torch", "adamw", OURS_ONLY),
    Candidate("adamw-fused", "torch AdamW fused=True", "torch", "adamw", OURS_ONLY),
]
BY_NAME = {c.name: c for c in CANDIDATES}
REFERENCE = "lion-pytorch"  # the "vs lion-pytorch" column's denominator


# --------------------------------------------------------------------------- roofline

def bytes_per_step(cand: Candidate, config: Config, shapes: list) -> int:
    """The least bytes one step of ``cand`` moves: read θ, g, state; write θ, state."""
    p = 2 if config.param == "bfloat16" else 4
    m = 2 if config.momentum == "bfloat16" else 4
    states = 2 if cand.algorithm == "adamw" else 1
    total = 0
    for _, shape, role in shapes:
        n = 1
        for s in shape:
            n *= s
        per = 2 * p + p + 2 * states * m
        if cand.theta_reread and role in ("weight", "embedding"):
            per += p
        total += n * per
    return total


# --------------------------------------------------------------------------- worker side

class Unavailable(Exception):
    """The candidate's package (or code path) is not importable here."""


def _load_timm_lion() -> type:
    """timm's ``optim/lion.py`` without ``timm/__init__`` (which imports torchvision)."""
    found = importlib.util.find_spec("timm")  # finds the package without importing it
    if found is None or not found.submodule_search_locations:
        raise Unavailable("not installed", "no module timm")
    root = Path(next(iter(found.submodule_search_locations)))
    for name, path in (("timm", root), ("timm.optim", root / "optim")):
        stub_spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        stub_spec.submodule_search_locations = [str(path)]
        sys.modules[name] = importlib.util.module_from_spec(stub_spec)
    return importlib.import_module("timm.optim.lion").Lion


def build_optimizer(cand: Candidate, params: list, roles: list[str], momentum_dtype: Any) -> Any:
    """``cand``'s optimizer over ``params``; raises Unavailable(status, detail) if it can't be."""
    import torch

    name = cand.name
    try:
        if name.startswith("ours-"):
            try:
                from lionspec.impls import torch as ours
            except ImportError as e:
                raise Unavailable("not available yet", f"{type(e).__name__}: {e}") from e
            cls = {"lion": "Lion", "signum": "Signum", "tiger": "Tiger"}[cand.algorithm]
            if not hasattr(ours, cls):
                raise Unavailable("not available yet", f"lionspec.impls.torch has no {cls}")
            path = {"loop": {"foreach": False}, "foreach": {"foreach": True},
                    "fused": {"fused": True}}[name.rsplit("-", 1)[1]]
            if cand.algorithm == "lion":
                return ours.Lion(params, **LION, **path, momentum_dtype=momentum_dtype)
            if cand.algorithm == "signum":
                return ours.Signum(params, **SIGNUM, **path, momentum_dtype=momentum_dtype)
            pairs = list(zip(params, roles, strict=True))
            groups = [{"params": [p for p, r in pairs if r == role], "role": role}
                      for role in sorted(set(roles))]
            return ours.Tiger(groups, **TIGER, **path, momentum_dtype=momentum_dtype)
        if name == "lion-pytorch":
            from lion_pytorch import Lion
            return Lion(params, **LION)
        if name == "lion-pytorch-foreach":
            try:
                from lion_pytorch.foreach import Lion
            except ModuleNotFoundError as e:
                if e.name != "lion_pytorch.foreach":
                    raise  # lion-pytorch itself is missing: "not installed" below
                raise Unavailable("no foreach path in this version", str(e)) from e
            return Lion(params, **LION)
        if name in ("timm", "timm-foreach"):
            lion = _load_timm_lion()
            return lion(params, **LION, foreach=True if name == "timm-foreach" else None)
        if name.startswith("pyopt-"):
            import pytorch_optimizer.optimizer as po
            if cand.algorithm == "lion":
                opt = po.Lion(params, **LION)
            elif cand.algorithm == "tiger":
                opt = po.Tiger(params, **TIGER)
            else:
                opt = po.SignSGD(params, **SIGNUM)
            if cand.compiles:
                if not hasattr(opt, "_compile_foreach"):
                    raise Unavailable("no _compile_foreach() in this version")
                opt._compile_foreach()
            return opt
        if name == "adamw-foreach":
            return torch.optim.AdamW(params, **ADAMW, foreach=True)
        if name == "adamw-fused":
            return torch.optim.AdamW(params, **ADAMW, fused=True)
    except ModuleNotFoundError as e:
        raise Unavailable("not installed", f"no module {e.name}") from e
    raise ValueError(name)


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def _rss_kib() -> int:
    rss = _proc_status_kib("VmRSS")
    return rss if rss is not None else _maxrss_kib()


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_kib() -> int:
    hwm = _proc_status_kib("VmHWM")
    return hwm if hwm is not None else _maxrss_kib()


SAMPLE = 97  # |Δθ| is measured on every 97th element of each tensor


def run_worker(name: str, config_name: str, scale: float, repeats: int, warmup: int,
               threads: int, seed: int, max_timed_s: float = 20.0) -> dict:
    """Time one candidate in one configuration in this process; returns the result record."""
    import torch

    torch.set_num_threads(threads)
    cand, config = BY_NAME[name], CONFIGS[config_name]
    pdtype, mdtype = getattr(torch, config.param), getattr(torch, config.momentum)
    try:  # cheap probe first: a missing package should not cost the tensors' generation
        build_optimizer(cand, [torch.nn.Parameter(torch.zeros(2, dtype=pdtype))], ["weight"],
                        mdtype)
    except Unavailable as e:
        return {"status": e.args[0], "detail": e.args[-1]}
    rmw = rmw_bandwidth()  # this process's view of the machine, before its tensors exist
    shapes = scaled_shapes(scale)
    gen = torch.Generator().manual_seed(seed)
    params, roles = [], []
    for _, shape, role in shapes:
        p = torch.randn(shape, generator=gen).mul_(0.02)
        if role == "scale":
            p += 1.0
        g = torch.randn(shape, generator=gen).mul_(1e-3)
        param = torch.nn.Parameter(p.to(pdtype))
        param.grad = g.to(pdtype)
        params.append(param)
        roles.append(role)
    theta0 = [p.detach().reshape(-1)[::SAMPLE].clone() for p in params]
    gc.collect()
    base = _rss_kib()
    opt = build_optimizer(cand, params, roles, mdtype)
    resettable = _reset_peak()
    t0 = time.perf_counter()
    opt.step()
    first = time.perf_counter() - t0
    peak_first = _peak_kib() - base
    out: dict[str, Any] = {"status": "ok", "first_ms": first * 1e3,
                           "peak_first_mib": peak_first / 1024, "peak_resettable": resettable}
    for _ in range(warmup):
        opt.step()
    _reset_peak()
    times: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or sum(times) < max_timed_s):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / ((time.perf_counter() - wall0) * threads)
    peak_steady = _peak_kib() - base
    state = sum(t.nbytes for s in opt.state.values() for t in s.values()
                if isinstance(t, torch.Tensor))
    steps = 1 + warmup + len(times)
    moved = sum((p.detach().reshape(-1)[::SAMPLE].double() - p0.double()).abs().sum().item()
                for p, p0 in zip(params, theta0, strict=True))
    n = sum(p0.numel() for p0 in theta0)
    rmw_after = rmw_bandwidth()  # and after: the host's bandwidth drifts over minutes
    out.update(median_ms=statistics.median(times) * 1e3, min_ms=min(times) * 1e3,
               times_ms=[t * 1e3 for t in times], cpu_share=cpu, loadavg=os.getloadavg()[0],
               rmw=rmw, rmw_after=rmw_after,
               peak_steady_mib=peak_steady / 1024, state_mib=state / 2**20,
               moved=moved / (n * LR[cand.algorithm] * steps),
               state_dtypes=sorted({str(t.dtype).removeprefix("torch.") for s in opt.state.values()
                                    for t in s.values()
                                    if isinstance(t, torch.Tensor) and t.numel() > 1}))
    return out


# --------------------------------------------------------------------------- parent side

def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_describe() -> str:
    """lionspec's commit, and whether impls/ differs from it (read-only git commands)."""
    root = HERE.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "impls"], cwd=root, text=True,
                               capture_output=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "lionspec commit unknown"
    return f"lionspec at {head}" + (" + uncommitted impls/ changes" if dirty else "")


def _spawn(argv: list[str], env: dict[str, str], timeout: float) -> dict:
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"status": f"crashed (exit {proc.returncode}): {tail[:160]}"}


def measure_bandwidth(threads: int, env: dict[str, str], timeout: float) -> dict:
    """Run ``bench/stream.py`` in a subprocess with ``threads`` threads; its JSON record."""
    argv = [sys.executable, str(HERE / "stream.py"), "--threads", str(threads), "--json"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


CONTENDED = 0.9  # cpu share below which a run lost a core to another process


def choose(runs: list[dict], compiles: bool) -> dict:
    """The record of a row from its worker runs: the least disturbed one.

    Of the runs with the whole CPU (process CPU time over the timed steps ≥ 90% of wall time ×
    threads) the one with the lowest median is kept, else the one with the highest share;
    ``first_ms`` is always the first (cold-cache) run's, ``warm_first_ms`` the second's for a
    compiled row.
    """
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return dict(runs[0])
    full = [r for r in ok if r["cpu_share"] >= CONTENDED]
    best = dict(min(full, key=lambda r: r["median_ms"]) if full
                else max(ok, key=lambda r: r["cpu_share"]))
    best["first_ms"] = ok[0]["first_ms"]
    best["peak_first_mib"] = ok[0]["peak_first_mib"]
    if compiles and len(ok) > 1:
        best["warm_first_ms"] = ok[1]["first_ms"]
    best["runs"] = [{**{k: r.get(k) for k in ("status", "median_ms", "cpu_share", "first_ms",
                                              "round")},
                     "local_gbs": local_bandwidth(r) if r["status"] == "ok" else None}
                    for r in runs]
    return best


def local_bandwidth(r: dict) -> float:
    """A row's own bandwidth: the mean of its worker's rmw measurements before and after timing
    (those with the whole CPU, if any)."""
    samples = [r["rmw"], r["rmw_after"]]
    full = [s["best"] for s in samples if s["cpu"] >= CONTENDED]
    return statistics.fmean(full or [s["best"] for s in samples])


def combine_bandwidth(samples: list[dict]) -> tuple[float, str]:
    """The roofline's bandwidth from all rmw measurements of a run, and how it was chosen.

    Each sample is the best of a few repetitions (``bench/stream.py``). Samples taken while
    another process held a core (CPU share < 90%) are dropped; the median of the rest is the
    bandwidth this run's uncontended steps had available (the host's memory is shared too, so
    even uncontended samples vary). Where none is uncontended, the median of all is used.
    """
    full = [s["best"] for s in samples if s["cpu"] >= CONTENDED]
    use = full or [s["best"] for s in samples]
    return statistics.median(use), (
        f"median of {len(use)} {'uncontended ' if full else ''}measurements of {len(samples)} "
        f"(before, after, and one in each worker; range {min(use):.1f}–{max(use):.1f})")


def by_round(r: dict) -> dict[int, dict]:
    """A row's fastest finished run in each round of ``--rounds`` (round index -> run record);
    retries belong to no round."""
    out: dict[int, dict] = {}
    for q in r.get("runs", []):
        k = q.get("round")
        if q.get("status") == "ok" and k is not None and (
                k not in out or q["median_ms"] < out[k]["median_ms"]):
            out[k] = q
    return out


def per_round(ratio: Callable[[int], float | None], rounds: Iterable[int]) -> str:
    """``; per round: median× [min–max×] over n rounds`` of ``ratio(k)`` where it is defined
    (within one round the rows ran minutes apart, so the host's drift largely cancels), or ``""``
    for fewer than two rounds."""
    values = [v for v in (ratio(k) for k in rounds) if v is not None]
    if len(values) < 2:
        return ""
    return (f"; per round: {statistics.median(values):.2f}× [{min(values):.2f}–"
            f"{max(values):.2f}×] over {len(values)} rounds")


def print_targets(rows: list[dict]) -> None:
    """Issue 3 item 6's targets next to this run's numbers (printed, not asserted). With
    ``--rounds`` each target also gets its ratio within every round: median and range."""
    ok = [r for r in rows if r["status"] == "ok" and "median_ms" in r]

    def row(name: str, config: str) -> dict | None:
        return next((r for r in ok if r["name"] == name and r["config"] == config), None)

    def vs_roofline(r: dict) -> str:
        runs = by_round(r)
        return per_round(lambda k: runs[k]["median_ms"] * runs[k]["local_gbs"] * 1e6
                         / r["bytes"], runs)

    def vs(r: dict, others: list[dict], faster: bool = False) -> str:
        """Per round, ``r``'s time over the fastest of ``others`` in that round (``faster``:
        the inverse, a speedup)."""
        mine, theirs = by_round(r), [by_round(q) for q in others]

        def ratio(k: int) -> float | None:
            times = [t[k]["median_ms"] for t in theirs if k in t]
            if k not in mine or not times:
                return None
            x = mine[k]["median_ms"] / min(times)
            return 1 / x if faster else x
        return per_round(ratio, mine)

    lines = []
    for config in CONFIGS:
        r = row("ours-lion-fused", config)
        if r and config == "fp32":
            lines.append(f"Lion fused fp32: {r['median_ms'] / r['roofline_ms']:.2f}× its roofline "
                         "(target ≤ 1.10×)" + vs_roofline(r))
        compiled = [q for q in ok if q["config"] == "bf16" and q["package"] != "lionspec"
                    and q["algorithm"] == "lion" and BY_NAME[q["name"]].compiles]
        if r and config != "fp32" and compiled:
            peer = min(compiled, key=lambda q: q["median_ms"])
            lines.append(f"Lion fused {config}: {r['median_ms'] / peer['median_ms']:.2f}× the best "
                         f"compiled peer's bf16 time ({peer['name']}, {peer['median_ms']:,.1f} ms; "
                         f"target ≤ 1.00×){vs(r, compiled)}; "
                         f"{r['median_ms'] / r['roofline_ms']:.2f}× its roofline")
        for name in ("ours-lion-fused", "ours-tiger-fused"):
            r = row(name, config)
            if r and r.get("warm_first_ms") is not None:
                lines.append(f"{name} {config} first step: {r['warm_first_ms']:,.0f} ms with a "
                             f"warm compile cache, {r['first_ms']:,.0f} ms cold "
                             "(target ≤ 2,000 ms)")
        r, ref = row("ours-lion-foreach", config), row(REFERENCE, config)
        if r and ref:
            lines.append(f"Lion foreach {config}: {ref['median_ms'] / r['median_ms']:.2f}× faster "
                         "than lion-pytorch (target ≥ 1.5×)" + vs(r, [ref], faster=True))
        r = row("ours-tiger-fused", config)
        if r:
            lines.append(f"Tiger fused {config}: {r['median_ms'] / r['roofline_ms']:.2f}× its "
                         "roofline (target ≤ 1.25×)" + vs_roofline(r))
    if lines:
        print("targets (issue 3, item 6; printed, not asserted):")
        for line in lines:
            print("  " + line)


def report(data: dict, markdown: bool = False) -> None:
    """Print the bandwidth, the rooflines, the table, the best peers and the targets of a run."""
    streams, results = data["streams"], data["results"]
    bw, note = combine_bandwidth([s["kernels"]["rmw"] for s in streams]
                                 + [r[k] for r in results for k in ("rmw", "rmw_after")
                                    if r.get(k)])
    print(f"rmw bandwidth: {bw:.1f} GB/s, {note}")
    print(f"roofline at {bw:.1f} GB/s (each row below uses its own worker's bandwidth):")
    for k in data["bytes"]:
        print(f"  {k['config']:<11} {k['what']:<20} {k['bytes'] / data['params']:5.1f} B/param  "
              f"{k['bytes'] / bw / 1e6:8.1f} ms/step")
    rows = make_rows(results)
    print(f"\nresults ({data['seconds']:.0f} s, load average {data['loadavg_end']:.2f}):")
    print_table(rows, markdown=False)
    if any(r["status"] == "ok" and r["cpu_share"] < CONTENDED for r in rows):
        print("† contended: another process took part of the CPU in every run of this row")
    seen = set()
    for r in rows:
        if r.get("best_peer") and r["best_peer"] not in seen:
            seen.add(r["best_peer"])
            print(f"best peer, {r['best_peer']}: {r['best_peer_ms']:,.1f} ms/step")
    print_targets(rows)
    if markdown:
        print()
        print_table(rows, markdown=True)


def _print_stream(when: str, stream: dict) -> None:
    print(f"bandwidth {when} (bench/stream.py, GB/s best/median): " + ", ".join(
        f"{k} {v['best']:.1f}/{v['median']:.1f}" for k, v in stream["kernels"].items())
        + f"; load average {stream['loadavg']:.2f}", flush=True)


def _fmt(x: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "—" if x is None else f"{x:{spec}}{suffix}"


def make_rows(results: list[dict]) -> list[dict]:
    """Add GB/s, % of (the row's own) roofline and the ratio columns to each finished result."""
    def peer_config(config: str) -> str:
        return "bf16" if config == "bf16+fp32m" else config  # the peers' only bf16 mode

    def best_peer(r: dict) -> dict | None:
        peers = [q for q in results if q["status"] == "ok"
                 and q["config"] == peer_config(r["config"]) and q["algorithm"] == r["algorithm"]
                 and q["package"] != "lionspec" and q["algorithm"] != "adamw"]
        return min(peers, key=lambda q: q["median_ms"], default=None)

    for r in results:
        if r["status"] != "ok" or "median_ms" not in r:
            continue
        r["gbs"] = r["bytes"] / r["median_ms"] / 1e6
        r["pct_roof"] = 100 * r["gbs"] / r["local_gbs"]
        ref = next((q for q in results if q["name"] == REFERENCE and q["status"] == "ok"
                    and q["config"] == peer_config(r["config"])), None)
        r["vs_ref"] = ref["median_ms"] / r["median_ms"] if ref else None
        peer = best_peer(r)
        r["vs_best_peer"] = r["median_ms"] / peer["median_ms"] if peer else None
        r["best_peer"] = f"{peer['config']} {peer['algorithm']}: {peer['label']}" if peer else None
        r["best_peer_ms"] = peer["median_ms"] if peer else None
    return results


COLUMNS = ["config", "candidate", "ms/step", "first ms (warm)", "B GB/s", "roofline ms", "GB/s",
           "%roof",
           "vs lion-pytorch", "× best peer", "state MiB", "peak Δ MiB first/steady", "|Δθ|/lr·n"]


def _cells(r: dict) -> list[str]:
    if r["status"] != "ok":
        return [r["config"], r["label"], r["status"], *[""] * (len(COLUMNS) - 3)]
    first = _fmt(r["first_ms"])
    if r.get("warm_first_ms") is not None:
        first += f" ({r['warm_first_ms']:,.0f})"
    mark = "†" if r["cpu_share"] < CONTENDED else ""
    return [r["config"], r["label"], _fmt(r["median_ms"], ",.1f") + mark, first,
            _fmt(r["local_gbs"], ".1f"), _fmt(r["roofline_ms"], ",.1f"), _fmt(r["gbs"], ".1f"),
            _fmt(r["pct_roof"], ".0f", "%"),
            _fmt(r["vs_ref"], ".2f", "×"), _fmt(r["vs_best_peer"], ".2f", "×"),
            _fmt(r["state_mib"]), f"{r['peak_first_mib']:,.0f} / {r['peak_steady_mib']:,.0f}",
            _fmt(r["moved"], ".3g")]


def print_table(rows: list[dict], markdown: bool) -> None:
    """Print the results as an aligned text table, or as a Markdown table."""
    cells = [_cells(r) for r in rows]
    if markdown:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for c in cells:
            print("| " + " | ".join(c) + " |")
        return
    widths = [max(len(h), *(len(c[i]) for c in cells if c[3] or i < 2))
              for i, h in enumerate(COLUMNS)]
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(COLUMNS, widths, strict=True))))
    for c in cells:
        if not c[3]:  # a status line: not installed, crashed, ...
            print(f"{c[0].ljust(widths[0])}  {c[1].ljust(widths[1])}  {c[2]}")
            continue
        print("  ".join(x.ljust(w) if i < 2 else x.rjust(w)
                        for i, (x, w) in enumerate(zip(c, widths, strict=True))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of each tensor's rows to keep (default 1.0: the full model)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    parser.add_argument("--max-timed-s", type=float, default=20.0,
                        help="stop timing a row after this many seconds (at least 3 steps)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="candidates to run, by name or glob (see --list)")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                        help="configurations to run (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of θ and the gradients")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per subprocess")
    parser.add_argument("--retries", type=int, default=1,
                        help="times a contended row (cpu < 90%%) is run again, at the end")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run all rows this many times, one round after another; the "
                             "targets then also give their ratio within each round")
    parser.add_argument("--inductor-cache", metavar="DIR",
                        help="compile cache for inductor and lionspec's native kernels "
                             "(default: a fresh one for this run)")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--json", metavar="PATH", help="write all results to PATH")
    parser.add_argument("--all", action="store_true", help="also run the extra candidates")
    parser.add_argument("--list", action="store_true", help="list the candidates and exit")
    parser.add_argument("--replay", metavar="PATH",
                        help="print the report of a run saved with --json, without running")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    if min(args.repeats, args.threads, args.rounds) < 1 or min(args.warmup, args.retries) < 0:
        parser.error("--repeats, --threads and --rounds must be >= 1, --warmup and --retries "
                     ">= 0")

    if args.worker:
        result = run_worker(args.worker, args.config, args.scale, args.repeats, args.warmup,
                            args.threads, args.seed, args.max_timed_s)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    if args.replay:
        data = json.loads(Path(args.replay).read_text())
        print("\n".join(data["header"]))
        report(data, args.markdown)
        return 0
    if args.list:
        for c in CANDIDATES:
            extra = "" if c.default else "  (extra)"
            print(f"{c.name:<22} {c.label}  [{', '.join(c.configs)}]{extra}")
        return 0
    selected = [c for c in CANDIDATES if c.default or args.all]
    if args.only:
        unknown = [pat for pat in args.only if not fnmatch.filter(BY_NAME, pat)]
        if unknown:
            parser.error(f"no candidate matches {unknown}; names: {', '.join(BY_NAME)}")
        selected = [c for c in CANDIDATES if any(fnmatch.fnmatch(c.name, p) for p in args.only)]
    jobs = [(c, CONFIGS[k]) for k in args.configs for c in selected if k in c.configs]

    import torch

    shapes = scaled_shapes(args.scale)
    n = sum(s[0] * (s[1] if len(s) > 1 else 1) for _, s, _ in shapes)
    cache = args.inductor_cache or tempfile.mkdtemp(prefix="lionspec-bench-inductor-")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TORCHINDUCTOR_CACHE_DIR": cache,
           "LIONSPEC_CACHE_DIR": cache}
    versions = {d: _version(d) for d in ("lionspec", "lion-pytorch", "timm", "pytorch-optimizer")}
    header = [
        f"lionspec torch CPU benchmark, {dt.date.today()}: {n:,} parameters in {len(shapes)} "
        f"tensors (GPT-2 small{'' if args.scale == 1 else f' x{args.scale}'}), {args.threads} "
        f"threads, median of {args.repeats} steps after 1 + {args.warmup}",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.backends.cpu.get_cpu_capability()}; python {platform.python_version()}, "
        f"torch {torch.__version__}, " + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f" ({_git_describe()})",
        "timm: optim/lion.py loaded without timm/__init__ (no torchvision); compile caches: "
        + (cache if args.inductor_cache else "fresh for this run"),
        "command: " + shlex.join(["python", "bench/torch_cpu.py",
                                  *(argv if argv is not None else sys.argv[1:])]),
    ]
    print("\n".join(header), flush=True)

    streams = [measure_bandwidth(args.threads, env, args.timeout)]
    _print_stream("before", streams[0])
    print(f"running {len(jobs)} (candidate, config) pairs, one subprocess each"
          + (f", {args.rounds} rounds" if args.rounds > 1 else "") + ":", flush=True)

    t_start = time.perf_counter()
    argvs = [[sys.executable, str(Path(__file__).resolve()), "--worker", cand.name, "--config",
              config.name, "--scale", str(args.scale), "--repeats", str(args.repeats),
              "--warmup", str(args.warmup), "--threads", str(args.threads), "--seed",
              str(args.seed), "--max-timed-s", str(args.max_timed_s)] for cand, config in jobs]
    runs: list[list[dict]] = [[] for _ in jobs]

    def finish(i: int) -> dict:
        cand, config = jobs[i]
        r = choose(runs[i], cand.compiles)
        b = bytes_per_step(cand, config, shapes)
        r.update(name=cand.name, label=cand.label, package=cand.package,
                 algorithm=cand.algorithm, config=config.name, bytes=b)
        if r["status"] == "ok":
            r["local_gbs"] = local_bandwidth(r)
            r["roofline_ms"] = b / r["local_gbs"] / 1e6
        return r

    def progress(tag: str, i: int, wall: float) -> None:
        r = finish(i)
        if r["status"] == "ok":
            line = (f"{r['median_ms']:,.1f} ms/step ({r['roofline_ms'] / r['median_ms']:.0%} of "
                    f"roofline), first {r['first_ms']:,.0f} ms")
            if r.get("warm_first_ms") is not None:
                line += f" (warm cache {r['warm_first_ms']:,.0f} ms)"
            line += (f", peak +{r['peak_steady_mib']:,.0f} MiB; cpu {r['cpu_share']:.0%} of "
                     f"{args.threads} threads, load {r['loadavg']:.2f}; runs: "
                     + ", ".join(f"{q['median_ms']:,.1f} ms at {q['cpu_share']:.0%}"
                                 for q in r["runs"] if q["status"] == "ok"))
        else:
            line = r["status"] + (f": {r['detail']}" if r.get("detail") else "")
        print(f"[{tag}] {r['config']:<10} {r['name']:<22} {line}  [{wall:.0f} s]", flush=True)

    for rnd in range(args.rounds):
        for i, (cand, _) in enumerate(jobs):
            t0 = time.perf_counter()
            new = [_spawn(argvs[i], env, args.timeout)]
            if rnd == 0 and cand.compiles and new[0]["status"] == "ok":
                new.append(_spawn(argvs[i], env, args.timeout))  # first step, warm cache
            runs[i] += [{**r, "round": rnd} for r in new]
            tag = f"{i + 1}/{len(jobs)}" + (f" r{rnd + 1}" if args.rounds > 1 else "")
            progress(tag, i, time.perf_counter() - t0)
    for attempt in range(args.retries):  # at the end: contention on a shared host comes in spells
        pending = [i for i in range(len(jobs)) if finish(i)["status"] == "ok"
                   and finish(i)["cpu_share"] < CONTENDED]
        if pending:
            print(f"retry {attempt + 1}: {len(pending)} contended row(s)", flush=True)
        for k, i in enumerate(pending, 1):
            t0 = time.perf_counter()
            runs[i].append(_spawn(argvs[i], env, args.timeout))
            progress(f"retry {k}/{len(pending)}", i, time.perf_counter() - t0)
    results = [finish(i) for i in range(len(jobs))]
    if not args.inductor_cache:
        shutil.rmtree(cache, ignore_errors=True)
    streams.append(measure_bandwidth(args.threads, env, args.timeout))
    _print_stream("after", streams[1])
    kinds = {}
    for cand, config in jobs:
        what = cand.algorithm + (" (+θ re-read)" if cand.theta_reread else "")
        kinds[(config.name, what)] = bytes_per_step(cand, config, shapes)
    data = {"header": header, "streams": streams, "results": results, "params": n,
            "seconds": time.perf_counter() - t_start, "loadavg_end": os.getloadavg()[0],
            "bytes": [{"config": c, "what": w, "bytes": b} for (c, w), b in kinds.items()]}
    if args.json:  # before any post-processing, so a run is never lost (see --replay)
        Path(args.json).write_text(json.dumps(data, indent=1))
    report(data, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
