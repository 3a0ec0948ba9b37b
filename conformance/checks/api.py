"""The API-level checks: what an optimizer object must get right beyond one step's arithmetic.

Checkpoints (``state_dict`` round trips), memory layouts, gradients left intact, parameters of
several dtypes in one optimizer, float64 computed in float64, run-to-run determinism and
zero-size / 0-d tensors. Most of them compare two runs of the same case *bit for bit* (a resumed
run against the uninterrupted one, a transposed layout against the contiguous one, a run against
its repetition) and judge the values with the derived bounds where the spec is the reference.
Each needs the capabilities it names (:data:`~lionspec.conformance.profile.CAPABILITIES`); a
target without them is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lionspec import spec
from lionspec.spec.formats import round_to

from ..target import AdapterError, Case, Functional, TorchOptimizer, Trace, stored_values
from ._support import (
    SKIP,
    CheckResult,
    Context,
    check,
    failure,
    merge,
    outcome,
    passed,
)
from .core import decision_weights, default_hyper

__all__ = ["bit_differences", "checkpoint", "determinism", "float64", "grad_intact",
           "mixed_dtype_groups", "noncontiguous", "run_interleaved", "zero_size"]

#: what a target may raise when it cannot handle an input (a crash is a failure of the check
#: that fed it; :class:`AdapterError`, a RuntimeError, is re-raised: the target could not run)
_CRASHES = (RuntimeError, ValueError, TypeError, IndexError, ZeroDivisionError, AssertionError)


# ------------------------------------------------------------------------------- helpers

def _values(rng: np.random.Generator, shape: tuple[int, ...], dtype: str,
            scale: float = 1.0) -> np.ndarray:
    """Normal draws rounded to ``dtype`` (so representable there), as float64."""
    return round_to(rng.normal(0.0, scale, shape), dtype)


def _hyper(ctx: Context, **changes: Any) -> dict[str, Any]:
    return default_hyper(ctx.algorithm, **changes)


def _case(ctx: Context, shapes: Sequence[tuple[int, ...]], *, dtype: str = "float32",
          dtypes: Sequence[str] | None = None, momentum_dtype: str | None = None,
          steps: int | None = None, hyper: dict[str, Any] | None = None,
          roles: Sequence[str] | None = None, lrs: Sequence[float] | None = None) -> Case:
    """A case of random θ and gradients (normal draws rounded to each tensor's dtype)."""
    steps = ctx.settings.steps if steps is None else steps
    per = list(dtypes) if dtypes is not None else [dtype] * len(shapes)
    params = tuple(_values(ctx.rng, s, d) for s, d in zip(shapes, per, strict=True))
    grads = tuple(tuple(_values(ctx.rng, s, d) for s, d in zip(shapes, per, strict=True))
                  for _ in range(steps))
    return Case(ctx.algorithm, params, grads, hyper or _hyper(ctx), param_dtype=per[0],
                momentum_dtype=momentum_dtype,
                param_dtypes=tuple(per) if dtypes is not None else None,
                roles=tuple(roles) if roles is not None and ctx.algorithm == "tiger" else None,
                lrs=tuple(lrs) if lrs is not None else None)


def _momentum_dtypes(ctx: Context, dtype: str) -> list[str | None]:
    return [None, *(m for m in ctx.profile.momentum_dtypes if m != dtype)]


def _label(dtype: str, mdt: str | None) -> str:
    return dtype + (f" + {mdt} momentum" if mdt else "")


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))


def bit_differences(reference: Trace, other: Trace, *, offset: int = 0,
                    limit: int = 10) -> list[str]:
    """Where ``other`` differs bit for bit from ``reference``: ``other``'s row ``j`` is
    compared with ``reference``'s row ``offset + j`` (θ always, m where both observe it)."""
    lines: list[str] = []
    for j in range(len(other.params)):
        t = offset + j
        for what, ref_row, row in (("θ", reference.params[t], other.params[j]),
                                   ("m", reference.momenta[t], other.momenta[j])):
            if ref_row is None or row is None:
                continue
            for i, (a, b) in enumerate(zip(ref_row, row, strict=True)):
                if _same_bits(a, b):
                    continue
                if np.shape(a) != np.shape(b):
                    lines.append(f"after step {t}, {what}[{i}]: shape {np.shape(a)} became "
                                 f"{np.shape(b)}")
                    continue
                a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
                diff = np.flatnonzero(a64.reshape(-1).view(np.uint64)
                                      != b64.reshape(-1).view(np.uint64))
                k = int(diff[0])
                lines.append(f"after step {t}, {what}[{i}]: {diff.size} element(s) differ, "
                             f"first at flat index {k}: {float(a64.reshape(-1)[k]).hex()} vs "
                             f"{float(b64.reshape(-1)[k]).hex()}")
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def _attempt(ctx: Context, case: Case) -> tuple[Trace | None, str]:
    """Run ``case``; a crash of the target is returned as a message (not raised)."""
    try:
        return ctx.run(case), ""
    except AdapterError:
        raise
    except _CRASHES as exc:
        return None, f"the step raised {type(exc).__name__}: {exc}"


def _skip(check_id: str, reason: str) -> CheckResult:
    return CheckResult(check_id, SKIP, reason)


# ---------------------------------------------------------------------------- checkpoint

@check("checkpoint", "state_dict round trip: a resumed run is bit-identical to an uninterrupted "
       "one", requires=("state_dict",))
def checkpoint(ctx: Context) -> CheckResult:
    """Saving ``state_dict()`` after k steps and loading it into a fresh instance (over copies
    of the parameters) must change nothing: the remaining steps give θ and m bit-identical to
    the uninterrupted run, for every parameter dtype and every selectable momentum dtype,
    resumed after the first step, mid-run and before the last step (Tiger: accumulation
    windows of 2, so a resume lands mid-window; the learning rate changes every step where the
    target allows it). Known-bad: a ``load_state_dict`` that casts the float32 momentum of a
    bfloat16 parameter to bfloat16 (``torch.optim.Optimizer``'s default behaviour for floating
    state), or one that drops Tiger's micro-step counter."""
    adapter = ctx.target.adapter
    if not hasattr(adapter, "run_resumed"):
        return _skip("checkpoint", f"the {adapter.kind} adapter cannot save and restore state")
    steps = max(ctx.settings.steps, 4)
    resume_at = sorted({1, steps // 2, steps - 1})
    hyper = _hyper(ctx, accumulation_steps=2) if ctx.algorithm == "tiger" else _hyper(ctx)
    lrs = ([hyper["lr"] * f for f in (1.0, 0.5, 2.0, 0.75)] * steps)[:steps] \
        if ctx.profile.has("lr_change") else None
    results = []
    for dtype in ctx.dtypes():
        for mdt in _momentum_dtypes(ctx, dtype):
            case = _case(ctx, [(7,), (3, 4)], dtype=dtype, momentum_dtype=mdt, steps=steps,
                         hyper=hyper, roles=("weight", "bias"), lrs=lrs)
            reference = ctx.run(case)
            for at in resume_at:
                lines = bit_differences(reference, adapter.run_resumed(case, at), offset=at)
                if lines:
                    return failure("checkpoint", f"{_label(dtype, mdt)}: resumed after step "
                                   f"{at}, the run differs from the uninterrupted one",
                                   lines=lines, repro=case.describe(),
                                   diagnosis="the restored state is not the saved state "
                                   "(a dtype cast, a lost counter or a missing entry)")
            results.append(passed("checkpoint", f"{_label(dtype, mdt)}: resumed after steps "
                                  f"{resume_at}, bit-identical"))
    return merge("checkpoint", results)


# ------------------------------------------------------------------------- noncontiguous

@check("noncontiguous", "Transposed (non-contiguous) parameters: bit-identical to contiguous "
       "ones, and conforming", requires=("noncontiguous",))
def noncontiguous(ctx: Context) -> CheckResult:
    """Every 2-D parameter laid out transposed in memory (column-major strides, as a
    ``weight.t()`` of a linear layer is; the gradient stays row-major) must give bit-for-bit
    the θ and m of the contiguous layout at every step, and those must conform. Non-square
    shapes, so a mispairing cannot hide; for Tiger the embedding role (an RMS per row) is
    included. Known-bad: a kernel that walks θ and m in storage order but the gradient in
    logical order (ignoring strides), right only for contiguous tensors."""
    if isinstance(ctx.target.adapter, Functional):
        return _skip("noncontiguous", "a functional step on NumPy arrays has no memory layout "
                     "to vary")
    results = []
    roles = ("weight", "embedding", "bias")
    for dtype in ctx.dtypes():
        case = _case(ctx, [(5, 3), (4, 6), (7,)], dtype=dtype, roles=roles)
        plain = ctx.run(case)
        transposed_case = case.with_(transposed=True)
        transposed, crash = _attempt(ctx, transposed_case)
        if transposed is None:
            return failure("noncontiguous", f"{dtype}: transposed parameters: {crash}",
                           repro=transposed_case.describe())
        lines = bit_differences(plain, transposed)
        if lines:
            return failure("noncontiguous", f"{dtype}: the transposed layout gives other bits "
                           "than the contiguous one", lines=lines,
                           repro=transposed_case.describe(),
                           diagnosis="the step depends on the memory layout (strides ignored?)")
        results.append(outcome("noncontiguous", transposed_case, transposed, ctx.target,
                               what=f"{dtype}, transposed, bit-identical to contiguous"))
    return merge("noncontiguous", results)


# --------------------------------------------------------------------------- grad-intact

@check("grad-intact", "step() leaves the gradients bit-for-bit unchanged",
       requires=("grad_check",))
def grad_intact(ctx: Context) -> CheckResult:
    """The gradient handed to a step belongs to the caller (gradient clipping, logging and
    accumulation read it afterwards), so ``step()`` must not write into it: after every step
    of a multi-step run with weight decay, in every dtype, each gradient must hold exactly the
    bits it held before. Known-bad: an optimizer that forms c = β1·m + (1 − β1)·g in the
    gradient's buffer (``p.grad.mul_(1 - β1).add_(...)``), or adds the decay into it."""
    results = []
    for dtype in ctx.dtypes():
        hyper = _hyper(ctx, accumulation_steps=2) if ctx.algorithm == "tiger" else _hyper(ctx)
        case = _case(ctx, [(9,), (2, 5)], dtype=dtype, hyper=hyper)
        trace = ctx.run(case)
        if not trace.grads_intact:
            return failure("grad-intact", f"{dtype}: a step modified the gradient it was given",
                           repro=case.describe(),
                           diagnosis="the gradient is used as scratch or updated in place")
        results.append(passed("grad-intact", f"{dtype}: {case.steps} steps, gradients intact"))
    return merge("grad-intact", results)


# -------------------------------------------------------------------- mixed dtype groups

@check("mixed-dtype-groups", "Parameters of different dtypes in one group each conform per "
       "dtype", requires=("param_groups",))
def mixed_dtype_groups(ctx: Context) -> CheckResult:
    """One optimizer (one param group) holding a parameter of every declared dtype (e.g.
    float64, float32, float16, bfloat16), in the declared order and reversed, with the
    default momentum and with each selectable momentum dtype: every tensor must conform to the
    spec with the arithmetic and storage of *its own* dtype (float64 computed in float64, the
    others with their own rounding), which catches state, compute precision or foreach buckets
    taken from one tensor for all. Known-bad: an optimizer that allocates every momentum in
    the dtype of the group's first parameter."""
    dtypes = tuple(ctx.dtypes())
    if len(dtypes) < 2:
        return _skip("mixed-dtype-groups", "the profile declares a single parameter dtype")
    results = []
    for order in (dtypes, dtypes[::-1]):
        for mdt in [None, *ctx.profile.momentum_dtypes]:
            shapes = [(3 + 2 * k,) for k in range(len(order))]
            case = _case(ctx, shapes, dtypes=order, momentum_dtype=mdt)
            label = " + ".join(order) + (f", {mdt} momentum" if mdt else "")
            results.append(outcome("mixed-dtype-groups", case, ctx.run(case), ctx.target,
                                   what=label))
    return merge("mixed-dtype-groups", results)


# ------------------------------------------------------------------------------ float64

def _float64_case(ctx: Context, n: int) -> Case:
    """θ and gradients that float32 cannot hold, and a second-step gradient that cancels the
    decision variable to ±1e-10 relative (float64 decides it, float32 cannot)."""
    rng = ctx.rng
    hyper = _hyper(ctx, lr=1e-3, weight_decay=0.1)
    theta = rng.normal(0.0, 1.0, n) * (1.0 + 2.0**-40)
    g0 = rng.normal(0.0, 1.0, n)
    first = Case(ctx.algorithm, (theta,), ((g0,),), hyper, param_dtype="float64")
    step = {"lion": spec.lion_step, "signum": spec.signum_step,
            "tiger": spec.tiger_step}[ctx.algorithm]
    m1 = step(theta, g0, np.zeros(n), **first.spec_hyper(0, 0))[1]
    a, b = decision_weights(ctx.algorithm, hyper, 1)
    g1 = -a * m1 / b * (1.0 + 1e-10 * rng.choice([-1.0, 1.0], n))
    g2 = rng.normal(0.0, 1.0, n)
    return first.with_(grads=((g0,), (g1,), (g2,)))


@check("float64", "float64 parameters are computed in float64")
def float64(ctx: Context) -> CheckResult:
    """A target that accepts float64 parameters must compute them in float64: the step is
    judged with float64 arithmetic on inputs where float32 arithmetic lands outside the
    float64 bound -- θ and gradients that float32 cannot represent (θ·(1 − η·λ) and the
    momentum then round visibly), and a second-step gradient that cancels the decision
    variable to ±1e-10 relative, whose sign float64 decides exactly and float32 cannot.
    Skipped when the profile declares no float64 parameters or a narrower compute precision
    for them. Known-bad: an optimizer that computes in float32 and stores in float64."""
    if "float64" not in ctx.dtypes():
        return _skip("float64", "the profile declares no float64 parameters")
    compute = ctx.profile.compute_for("float64", None)
    if compute != "float64":
        return _skip("float64", f"the profile declares float64 parameters computed in {compute}")
    case = _float64_case(ctx, max(16, ctx.settings.max_size))
    return outcome("float64", case, ctx.run(case), ctx.target,
                   what="float64, values float32 cannot hold, decision cancelling at 1e-10")


# -------------------------------------------------------------------------- determinism

def run_interleaved(adapter: TorchOptimizer, case: Case, copies: int = 2) -> list[Trace]:
    """Run ``case`` on ``copies`` live instances of a torch optimizer at once, stepping them in
    turn (instance 0, 1, ... at step 0, then at step 1, ...): their traces must not depend on
    each other. Fresh state only (``case.exp_avgs`` must be ``None``)."""
    if case.exp_avgs is not None:
        raise ValueError("run_interleaved starts from the fresh state")

    runs = [adapter.new(case) for _ in range(copies)]
    traces = [Trace([[stored_values(p) for p in params]],
                    [[np.zeros(np.shape(v)) for v in case.params]]) for _, params in runs]
    for t, step in enumerate(case.grads):
        for (opt, params), trace in zip(runs, traces, strict=True):
            adapter.step_once(opt, params, step, case.lr_at(t))
            trace.params.append([stored_values(p) for p in params])
            trace.momenta.append(adapter.momenta(opt, params))
    return traces


@check("determinism", "The same case twice gives bit-identical traces, whatever the instance")
def determinism(ctx: Context) -> CheckResult:
    """Running the same case twice on fresh instances must give bit-identical θ and m at every
    step, in every dtype (no unseeded randomness, no state carried between runs); for a torch
    optimizer also two instances alive at once and stepped in turn must each give the same
    trace (no class-level or global state shared between instances). Known-bad: unseeded
    stochastic rounding of bfloat16 parameters; a momentum workspace shared by all instances
    of the class."""
    adapter = ctx.target.adapter
    results = []
    for dtype in ctx.dtypes():
        hyper = _hyper(ctx, accumulation_steps=2) if ctx.algorithm == "tiger" else _hyper(ctx)
        case = _case(ctx, [(11,), (3, 4)], dtype=dtype, hyper=hyper)
        first = ctx.run(case)
        lines = bit_differences(first, ctx.run(case))
        if lines:
            return failure("determinism", f"{dtype}: two runs of the same case differ",
                           lines=lines, repro=case.describe(),
                           diagnosis="the step is not deterministic (randomness, or state "
                           "carried from one run to the next)")
        what = "two runs"
        if isinstance(adapter, TorchOptimizer):
            for k, trace in enumerate(run_interleaved(adapter, case)):
                lines = bit_differences(first, trace)
                if lines:
                    return failure("determinism", f"{dtype}: instance {k} of two stepped in "
                                   "turn differs from a lone run", lines=lines,
                                   repro=case.describe(),
                                   diagnosis="instances share state (class-level or global)")
            what = "two runs and two interleaved instances"
        results.append(passed("determinism", f"{dtype}: {what} bit-identical"))
    return merge("determinism", results)


# ---------------------------------------------------------------------------- zero-size

_ZERO_SHAPES: tuple[tuple[int, ...], ...] = ((6,), (0,), (), (3, 0), (2, 3))


def _c_strided(a: np.ndarray) -> np.ndarray:
    """``a`` with C-order strides even when empty. NumPy 2 gives empty arrays zero strides,
    which ``torch.tensor`` keeps; a zero-stride 1-D tensor cannot be ``view``-ed as bytes,
    which the torch adapter's gradient comparison does (an adapter limitation, not the
    target's: ``torch.zeros(0)`` has stride 1, so these are the layouts users pass)."""
    if a.size:
        return a
    strides = tuple(int(np.prod(a.shape[k + 1:])) * a.itemsize for k in range(a.ndim))
    return np.lib.stride_tricks.as_strided(a, a.shape, strides)


def _zero_size_case(ctx: Context, dtype: str) -> Case:
    case = _case(ctx, _ZERO_SHAPES, dtype=dtype)
    return case.with_(params=tuple(_c_strided(p) for p in case.params),
                      grads=tuple(tuple(_c_strided(g) for g in step) for step in case.grads))


@check("zero-size", "Zero-size and 0-d tensors next to normal ones: no crash, 0-d conforms",
       requires=("zero_size",))
def zero_size(ctx: Context) -> CheckResult:
    """Zero-size tensors (shapes (0,) and (3, 0), as an empty embedding or a pruned layer
    gives) and a 0-d tensor (a scalar gain) in one optimizer with normal ones: the steps must
    not raise, the zero-size tensors must keep their shapes (and their empty momenta), and
    every element -- the 0-d tensor's included (Tiger: its RMS is |θ|) -- must conform.
    Known-bad: a per-tensor ``max()`` guard (it raises on an empty tensor) or a reshape to
    rows of the last dimension (a 0-d tensor has none)."""
    results = []
    for dtype in ctx.dtypes():
        case = _zero_size_case(ctx, dtype)
        trace, crash = _attempt(ctx, case)
        if trace is None:
            return failure("zero-size", f"{dtype}: {crash}", repro=case.describe())
        lines = []
        for t in range(case.steps + 1):
            for what, row in (("θ", trace.params[t]), ("m", trace.momenta[t])):
                if row is None:
                    continue
                for i, value in enumerate(row):
                    if np.shape(value) != np.shape(case.params[i]):
                        lines.append(f"after step {t}, {what}[{i}] has shape {np.shape(value)}, "
                                     f"not {np.shape(case.params[i])}")
        if lines:
            return failure("zero-size", f"{dtype}: tensor shapes changed", lines=lines[:10],
                           repro=case.describe())
        results.append(outcome("zero-size", case, trace, ctx.target,
                               what=f"{dtype}, shapes {list(_ZERO_SHAPES)}"))
    return merge("zero-size", results)
