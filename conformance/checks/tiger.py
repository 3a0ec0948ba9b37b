"""Tiger's own rules — per-tensor roles, the NaN rule — and the k-step accumulation identity
(Tiger's built-in accumulation; Lion and SIGNUM through an accumulated mean gradient)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from lionspec import spec
from lionspec.spec import bounds
from lionspec.spec.formats import get_format, round_to
from lionspec.spec.variations import lion_accumulated_step

from ..target import Case, Target, Trace
from ..verdict import FAILURE, _oracle_err, judge_step
from ._support import (
    FAIL,
    CheckResult,
    Context,
    check,
    describe_variation,
    failure,
    judge_trace,
    merge,
    outcome,
)
from .core import default_hyper

__all__ = ["accumulation", "as_global_nan", "tiger_nan_rule", "tiger_roles"]


# ---------------------------------------------------------------------------------- roles

@check("tiger-roles", "Tiger's per-tensor roles: RMS scope, α/2 and no decay for biases, scales",
       algorithms=("tiger",), requires=("param_groups",))
def tiger_roles(ctx: Context) -> CheckResult:
    """Five tensors in one step, each with its role: a 2-D and a 1-D weight (η = α·RMS(θ) over
    the whole tensor), an embedding (η = α·RMS per row; its rows differ in scale by 16×, so a
    whole-tensor RMS is far off), a bias and a scale (η = α/2, no weight decay), with λ = 0.5
    and α = 2^-4 so that both the RMS scope and a decay on a bias move θ by many ulps. Two steps;
    each element is judged with ``judge_step`` for its tensor's role (η's error from the RMS
    bounded by ``bounds.rms_relative_error`` with the recursive-summation depth n unless the
    profile declares one, docs/bounds.md "Tiger's learning rate"). The 2-D weight's rows also
    differ in scale, so an RMS per row for weights is caught. Known-bad: RMS per row for
    weights; weight decay applied to biases and scales."""
    rng = ctx.rng
    results = []
    for dtype in ctx.dtypes():
        def r(x: np.ndarray, dt: str = dtype) -> np.ndarray:
            return round_to(x, dt)

        rows = np.array([[1.0], [16.0], [0.25]])
        params = (r(rng.normal(0, 1, (3, 4)) * rows), r(rng.normal(0, 1, 5)),
                  r(rng.normal(0, 1, (4, 3)) * np.array([[1.0], [16.0], [0.5], [4.0]])),
                  r(rng.normal(0, 1, 6)), r(1.0 + rng.normal(0, 0.1, 6)))
        roles = ("weight", "weight", "embedding", "bias", "scale")
        grads = tuple(tuple(r(rng.normal(0, 1, p.shape)) for p in params) for _ in range(2))
        hyper = default_hyper("tiger", lr=2.0**-4, weight_decay=0.5)
        case = Case("tiger", params, grads, hyper, param_dtype=dtype, roles=roles)
        results.append(outcome("tiger-roles", case, ctx.run(case), ctx.target,
                               what=f"{dtype}, roles {', '.join(roles)}"))
    return merge("tiger-roles", results)


# ------------------------------------------------------------------------------- NaN rule

def as_global_nan(case: Case) -> Case:
    """The case as a target with a *global* NaN flag sees it: at every micro-step where any
    tensor's gradient holds a NaN, every tensor's gradient does (Tiger's rule looks at the flag
    only, so judging this case canonically judges the trace under ``nan:shrink-global``)."""
    grads = []
    for step in case.grads:
        if any(np.isnan(g).any() for g in step):
            grads.append(tuple(np.full(np.shape(g), np.nan) for g in step))
        else:
            grads.append(step)
    return case.with_(grads=tuple(grads))


def judges_as_propagate(case: Case, trace: Trace, target: Target) -> bool:
    """Whether the trace is Tiger without a NaN rule (``nan:propagate``): IEEE propagation.

    ``judge_step`` applies Tiger's rule (m kept) whenever g holds a NaN, whatever variation it
    judges, so this is judged here: at a step whose gradient holds NaNs, those elements of θ'
    and m' must be NaN, and every other element must conform to the step on the gradient with
    its NaNs replaced by 0 (the algorithm is elementwise given η = α·RMS(θ_t), which does not
    depend on g, so the other elements' expected values are unchanged).
    """
    for t in range(case.steps):
        if trace.momenta[t] is None or trace.momenta[t + 1] is None:
            return False
        for i in range(len(case.params)):
            g = case.grads[t][i]
            nan = np.isnan(g)
            obs_p, obs_m = trace.params[t + 1][i], trace.momenta[t + 1][i]
            if nan.any() and not (np.isnan(obs_p[nan]).all() and np.isnan(obs_m[nan]).all()):
                return False
            v = judge_step("tiger", trace.params[t][i], np.where(nan, 0.0, g),
                           trace.momenta[t][i], obs_p, obs_m, hyper=case.spec_hyper(t, i),
                           arithmetic=target.profile.arithmetic(case.dtype_of(i),
                                                                case.momentum_dtype))
            if np.any(v.param[~nan] == FAILURE) or np.any(v.exp_avg[~nan] == FAILURE):
                return False
    return True


#: variations ``diagnose`` can name for Tiger's NaN steps that ``judge_step`` judges faithfully
#: (the rule's flag changes; the rule itself, m kept and θ shrunk, stays)
_SHRINK_VARIATIONS = ("nan:shrink-nonfinite", "nan:shrink-global")


def _nan_outcome(case: Case, trace: Trace, target: Target, what: str) -> CheckResult:
    result = outcome("tiger-nan-rule", case, trace, target, what=what)
    if result.status != FAIL:
        return result
    if result.variation is not None and result.variation.startswith("nan:") \
            and result.variation not in _SHRINK_VARIATIONS:
        # judge_step keeps the canonical rule on NaN steps, so such a name is not trustworthy
        result.variation, result.diagnosis = None, "no known variation explains it"
    if result.variation is None:
        for name, ok in (("nan:shrink-global",
                          lambda: judge_trace(as_global_nan(case), trace, target, limit=0).ok),
                         ("nan:propagate", lambda: judges_as_propagate(case, trace, target))):
            if ok():
                result.variation, result.diagnosis = name, describe_variation(name)
                break
    return result


@check("tiger-nan-rule", "Tiger's NaN rule: per tensor, centre 1 for scales, every micro-step, "
       "m kept", algorithms=("tiger",))
def tiger_nan_rule(ctx: Context) -> CheckResult:
    """A NaN anywhere in a tensor's gradient keeps that tensor's momentum bit for bit and
    shrinks its θ toward the role's centre, θ ← (θ − c)·s + c (c = 1 for scales, 0 otherwise),
    within ``bounds.shrink_error_bound`` (docs/bounds.md "Tiger's NaN rule"); the other tensors
    step normally (per-tensor scope), ±Inf does not trigger the rule (the momentum becomes
    infinite and θ steps), and the rule applies on every micro-step where it happens, also on
    the non-final micro-steps of an accumulation window (where θ otherwise must not move).
    Four tensors (weight, weight, scale, bias; roles need capability param_groups, else all are
    weights and the centre is not exercised), NaNs in one tensor at a time, an Inf in another,
    first with k = 1 and then with k = 3 and the NaN mid-window. The diagnosis names
    nan:propagate (no rule), nan:shrink-nonfinite (±Inf triggers it) and nan:shrink-global (one
    flag for all tensors, recognised by judging the trace with every tensor's gradient flagged
    at the NaN steps). Known-bad: each of those, a scale shrunk toward 0, and a rule applied on
    update steps only."""
    nan, inf = float("nan"), float("inf")
    has_roles = ctx.profile.has("param_groups")
    roles = ("weight", "weight", "scale", "bias") if has_roles else None
    results = []
    rng = ctx.rng
    for dtype in ctx.dtypes():
        params = (round_to(rng.normal(0, 1, 6), dtype), round_to(rng.normal(0, 1, (2, 3)), dtype),
                  round_to(1.0 + rng.normal(0, 0.25, 4), dtype), round_to(rng.normal(0, 1, 3),
                                                                         dtype))

        def grads_at(t: int, nan_in: int | None, inf_in: int | None,
                     p: tuple[np.ndarray, ...] = params, dt: str = dtype,
                     gen: np.random.Generator = rng) -> tuple[np.ndarray, ...]:
            out = []
            for i, x in enumerate(p):
                g = round_to(gen.normal(0, 1, x.shape), dt)
                if i == nan_in:
                    g.reshape(-1)[t % g.size] = nan
                if i == inf_in:
                    g.reshape(-1)[0] = inf
                out.append(g)
            return tuple(out)

        # k = 1: step 1 NaN in tensor 0, step 2 NaN in the scale and Inf in tensor 1
        grads = (grads_at(0, None, None), grads_at(1, 0, None), grads_at(2, 2, 1),
                 grads_at(3, None, None))
        hyper = default_hyper("tiger", lr=2.0**-6)
        case = Case("tiger", params, grads, hyper, param_dtype=dtype, roles=roles)
        results.append(_nan_outcome(case, ctx.run(case), ctx.target, f"{dtype}, k = 1"))
        # k = 3: NaN at micro-steps 1 (mid-window) and 3 (first of the second window)
        grads3 = (grads_at(0, None, None), grads_at(1, 3, None), grads_at(2, None, None),
                  grads_at(3, 0, None), grads_at(4, None, None), grads_at(5, None, None))
        case3 = Case("tiger", params, grads3, {**hyper, "accumulation_steps": 3},
                     param_dtype=dtype, roles=roles)
        results.append(_nan_outcome(case3, ctx.run(case3), ctx.target, f"{dtype}, k = 3"))
    out = merge("tiger-nan-rule", results)
    if not has_roles and out.status == "pass":
        out.summary += "; the scale centre was not exercised (no param_groups)"
    return out


# --------------------------------------------------------------------------- accumulation

_K = 4


def _tiger_accumulation(ctx: Context, dtype: str, mdt: str | None) -> CheckResult:
    rng = ctx.rng
    n = max(4, ctx.settings.max_size)
    theta = round_to(rng.normal(0, 1, n), dtype)
    grads = tuple((round_to(rng.normal(0, 1, n), dtype),) for _ in range(2 * _K))
    hyper = default_hyper("tiger", lr=2.0**-6, accumulation_steps=_K)
    case = Case("tiger", (theta,), grads, hyper, param_dtype=dtype, momentum_dtype=mdt)
    trace = ctx.run(case)
    label = dtype + (f" + {mdt} momentum" if mdt else "")
    result = outcome("accumulation", case, trace, ctx.target, what=f"Tiger k = {_K}, {label}")
    if result.status != "pass":
        return result
    a = ctx.profile.arithmetic(dtype, mdt)
    if not get_format(a.momentum_dtype).contains(get_format(a.compute)):
        result.summary += (f"; window identity not asserted: momentum stored in "
                           f"{a.momentum_dtype}, narrower than the compute format {a.compute} "
                           "(each micro-step is judged instead)")
        return result
    if any(m is None for m in trace.momenta):
        result.summary += "; window identity not asserted: momentum not observable"
        return result
    lines = []
    for w in range(2):
        m0 = trace.momenta[w * _K][0]
        gs = np.array([case.grads[w * _K + j][0] for j in range(_K)])
        _, want = lion_accumulated_step(np.zeros(n), list(gs), m0, lr=0.0,
                                        beta2=hyper["beta"])
        bound = bounds.accumulation_bound(m0, gs, hyper["beta"], _K, compute=a.compute) \
            + _oracle_err(want)
        got = trace.momenta[(w + 1) * _K][0]
        for i in np.flatnonzero(~(np.abs(got - want) <= bound)):
            lines.append(f"window {w} exp_avg[{i}]: m0={float(m0[i]).hex()} => observed "
                         f"{float(got[i]).hex()} expected β·m0 + (1 − β)·mean(g) = "
                         f"{float(want[i]).hex()}: outside accumulation_bound {bound[i]:.3g}")
    if lines:
        return failure("accumulation", f"Tiger k = {_K}, {label}: the window identity fails",
                       lines=lines[:20], repro=case.describe())
    result.summary += "; m after each window = β·m0 + (1 − β)·mean(g) within accumulation_bound"
    return result


def _mean_grads(rng: np.random.Generator, n: int) -> np.ndarray:
    """k = 4 micro-gradients per element whose sum and mean are exact in every format: values
    j·2^-4 with |j| <= 16 (5 significant bits); half of the elements cancel exactly (mean 0)."""
    gs = rng.integers(-16, 17, (_K, n)).astype(np.float64) * 2.0**-4
    cancel = np.arange(n) % 2 == 1
    gs[:, cancel] = np.array([[1.0], [-1.0], [0.5], [-0.5]]) * rng.integers(1, 17, cancel.sum())
    return gs


def _mean_accumulation(ctx: Context, dtype: str) -> CheckResult:
    rng = ctx.rng
    n = max(4, ctx.settings.max_size)
    theta = round_to(rng.normal(0, 1, n), dtype)
    g0 = round_to(rng.normal(0, 1, n), dtype)
    gs = _mean_grads(rng, n)
    total = [sum(Fraction(float(x)) for x in gs[:, i]) for i in range(n)]
    mean = np.array([float(t / _K) for t in total])
    if not np.array_equal(round_to(mean, dtype), mean):  # pragma: no cover - by construction
        raise RuntimeError("the micro-gradients' mean must be exact in the dtype")
    hyper = default_hyper(ctx.algorithm, lr=2.0**-6)
    hyper.pop("accumulation_steps", None)
    case = Case(ctx.algorithm, (theta,), ((g0,), (mean,)), hyper, param_dtype=dtype)
    trace = ctx.run(case)
    result = outcome("accumulation", case, trace, ctx.target,
                     what=f"{ctx.algorithm} on the mean of {_K} micro-gradients, {dtype}")
    # the identity the verdict rests on, at the target's own inputs of the accumulated step
    th1 = trace.params[1][0]
    m1 = trace.momenta[1][0] if trace.momenta[1] is not None else np.zeros(n)
    if ctx.algorithm == "lion":
        acc = lion_accumulated_step(th1, list(gs), m1, **hyper)
        one = spec.lion_step(th1, mean, m1, **hyper)
    else:
        b = hyper["beta"]
        acc = lion_accumulated_step(th1, list(gs), m1, lr=hyper["lr"], beta1=b, beta2=b,
                                    weight_decay=hyper["weight_decay"])
        one = spec.signum_step(th1, mean, m1, **hyper)
    if not all(np.array_equal(x, y) for x, y in zip(acc, one, strict=True)):
        raise RuntimeError("the spec's accumulated step differs from its step on the exact mean")
    if result.status == "pass":
        result.summary += " (= lion_accumulated_step: the mean is exact)"
    return result


@check("accumulation", "The k-step accumulation identity (Tiger built in; Lion/SIGNUM on the "
       "mean gradient)")
def accumulation(ctx: Context) -> CheckResult:
    """Tiger accumulates inside its momentum: over a window of k = 4 micro-steps θ must stay bit
    for bit unchanged on the non-final micro-steps, each micro-step's momentum is judged
    against the spec (``judge_trace``, windows included), and — where the momentum is stored in
    a format that contains the compute format (else each store adds its own rounding, judged
    per micro-step) — the momentum after each of two windows must be
    β·m0 + (1 − β)·mean(g_1..g_k) within ``bounds.accumulation_bound`` (running-error bound of
    the direct, Tiger and running-mean orders, docs/bounds.md "k-step accumulation"), m0 the
    target's own momentum at the window's start. Lion and SIGNUM cannot accumulate in their
    momentum; accumulated Lion is Lion on the mean gradient (``spec.lion_accumulated_step``,
    what summed ``.grad`` or optax.MultiSteps feed it), which the one-gradient-per-step adapter
    protocol can only deliver as a gradient: the check feeds the mean of k = 4 micro-gradients
    chosen so that the sum and mean are exact in the dtype (multiples of 2^-4, half of them
    cancelling to exactly 0), so the step on that gradient *is* the accumulated step (asserted
    on the spec at the target's own inputs) and the usual per-step bounds apply unchanged;
    with an inexact mean ḡ the bounds would grow by (1 − β)·|ḡ − mean| (linear in g), which is
    the caller's accumulation, not the optimizer's. Known-bad: a Tiger whose momentum does not
    accumulate (β applied every micro-step, weight 1 − β), and one whose θ moves on every
    micro-step."""
    results = []
    for dtype in ctx.dtypes():
        if ctx.algorithm == "tiger":
            results.append(_tiger_accumulation(ctx, dtype, None))
            wider = [m for m in ctx.profile.momentum_dtypes
                     if m != dtype and get_format(m).contains(get_format(dtype))]
            if wider and dtype in ("float16", "bfloat16"):
                results.append(_tiger_accumulation(ctx, dtype, wider[0]))
        else:
            results.append(_mean_accumulation(ctx, dtype))
    return merge("accumulation", results)
