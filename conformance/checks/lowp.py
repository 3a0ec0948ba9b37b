"""Low-precision checks: the exact predicates of fp16 and bf16 storage and compute.

Per-step bounds (:func:`~lionspec.conformance.verdict.judge_step`) allow an error of about one
storage ulp, which cannot tell a step that *must* be lost from one that must be kept, an EMA that
must underflow from one that must not, or a decay that must (not) be applied. The predicates of
:mod:`lionspec.spec.bounds` (``lost_step``, ``ema_underflow``, ``decay_noop``,
``beta_representation``) decide these exactly; the checks here build inputs where every
evaluation order the target's profile allows gives the predicate's answer, and assert it bit for
bit, alongside the usual per-element judgement of every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lionspec import spec
from lionspec.spec import bounds
from lionspec.spec.formats import get_format, is_representable, round_to

from ..target import Case
from ._support import CheckResult, Context, check, failure, merge, outcome, passed
from .core import default_hyper

__all__ = ["bf16_cancellation", "fp16_underflow", "lost_steps"]

#: θ values (all exact in their format) and step sizes η for the lost-step predicate; each η is a
#: power of two or 3·2^k, so it is exact in float32 and, where it matters, in the format itself.
_LOST = {
    "float16": ([1.0, -1.0, 1.5, -1.5, 1.0 + 2**-10, -(1.0 + 2**-10), 0.5, -0.5, 2.0**-14,
                 3 * 2.0**-24, -3 * 2.0**-24, 2.0**-24, 1000.0, 0.0],
                [2.0**-25, 2.0**-24, 2.0**-12, 2.0**-11, 3 * 2.0**-12, 2.0**-10]),
    "bfloat16": ([1.0, -1.0, 1.5, -1.5, 1.0 + 2**-7, -(1.0 + 2**-7), 0.5, -0.5, 100.0,
                  3 * 2.0**-133, -3 * 2.0**-133, 0.0],
                 [2.0**-134, 2.0**-9, 2.0**-8, 3 * 2.0**-9, 2.0**-7, 2.0**-10]),
}


def _compute(ctx: Context, dtype: str, mdt: str | None = None) -> str:
    return ctx.profile.compute_for(dtype, mdt)


def _ema_beta_key(algorithm: str) -> str:
    return "beta2" if algorithm == "lion" else "beta"


def lost_steps(ctx: Context, check_id: str, dtype: str) -> tuple[list[CheckResult], list[str]]:
    """The lost-step predicate in ``dtype``: one step of size η from the fresh state, λ = 0,
    gradients ±1 (so the direction is sign(g) in every arithmetic). Returns (results, notes)."""
    theta_list, etas = _LOST[dtype]
    theta = np.array(theta_list)
    g = np.where(np.arange(theta.size) % 2 == 0, 1.0, -1.0)
    s = np.sign(g)
    compute = _compute(ctx, dtype)
    results: list[CheckResult] = []
    notes: list[str] = []
    roles = None
    if ctx.algorithm == "tiger":
        if not ctx.profile.has("param_groups"):
            return [], ["lost steps not checked for Tiger: its exact η = α/2 needs the bias role "
                        "(capability param_groups)"]
        roles = ("bias",)
    checked = lost = 0
    for eta in etas:
        # elements where θ − η·s is exact in the compute format (and η is exact there): then
        # every evaluation is one rounding of the exact value into storage, the predicate's case
        robust = (is_representable(np.array([eta]), compute)[0]
                  & (round_to(theta - eta * s, compute) == theta - eta * s))
        if not robust.any():
            continue
        lr = 2 * eta if roles else eta
        hyper = default_hyper(ctx.algorithm, lr=lr, weight_decay=0.0)
        case = Case(ctx.algorithm, (theta,), ((g,),), hyper, param_dtype=dtype, roles=roles)
        trace = ctx.run(case)
        results.append(outcome(check_id, case, trace, ctx.target,
                               what=f"{dtype} lost steps, η = {eta!r}"))
        predicted = bounds.lost_step(theta, eta, s, dtype)
        observed = trace.params[1][0] == theta
        bad = robust & (predicted != observed)
        checked += int(robust.sum())
        lost += int((robust & predicted).sum())
        if bad.any():
            lines = [f"param[{i}]: θ={theta[i].hex()} η={float(eta).hex()} s={s[i]:+.0f} => "
                     f"observed {float(trace.params[1][0][i]).hex()}: lost_step predicts "
                     f"{'lost (θ unchanged)' if predicted[i] else 'kept (θ moves)'}"
                     for i in np.flatnonzero(bad)]
            results.append(failure(check_id, f"{dtype}: {int(bad.sum())} elements break the "
                                   f"lost-step predicate at η = {eta!r}", lines=lines,
                                   repro=case.describe()))
    results.append(passed(check_id, f"{dtype}: lost_step decided {checked} steps "
                          f"({lost} lost, {checked - lost} kept)"))
    return results, notes


# --------------------------------------------------------------------------------- fp16

#: gradients for the EMA-underflow predicate: |(1 − β)·g| at least 25% away from the threshold
#: subnormal_min/2 = 2^-25, far beyond any coefficient error (≤ 2^-11 relative) or double rounding
_EMA_GRADS = [1e-6, -1e-6, 2e-6, -1.5e-6, 1e-5, -1e-5, 4e-6, 1e-4, 0.5]


def _ema_underflow(ctx: Context) -> tuple[list[CheckResult], list[str]]:
    dtype, beta = "float16", 0.99
    g = round_to(np.array(_EMA_GRADS), dtype)
    ratio = np.abs((1.0 - beta) * g) / (get_format(dtype).subnormal_min / 2)
    robust = (ratio <= 0.75) | (ratio >= 1.25)
    theta = round_to(np.linspace(-1.0, 1.0, g.size), dtype)
    hyper = default_hyper(ctx.algorithm, lr=2.0**-10, **{_ema_beta_key(ctx.algorithm): beta})
    steps = ctx.settings.steps + 2
    case = Case(ctx.algorithm, (theta,), tuple((g,) for _ in range(steps)), hyper,
                param_dtype=dtype)
    trace = ctx.run(case)
    results = [outcome("fp16-underflow", case, trace, ctx.target, what="fp16 EMA underflow")]
    if any(m is None for m in trace.momenta[1:]):
        return results, ["EMA underflow not checked: the momentum is not observable"]
    if not all(is_representable(m[0], dtype).all() for m in trace.momenta[1:]):
        return results, ["EMA underflow not checked: the momentum is not stored in float16"]
    predicted = bounds.ema_underflow(g, beta, dtype)
    lines = []
    for t in range(1, steps + 1):
        m = trace.momenta[t][0]
        bad = robust & (predicted != (m == 0))
        lines += [f"step {t - 1} exp_avg[{i}]: g={float(g[i]).hex()} β={beta} => observed "
                  f"{float(m[i]).hex()}: ema_underflow predicts "
                  f"{'m = 0 exactly (ŵ·g underflows)' if predicted[i] else 'm ≠ 0'}"
                  for i in np.flatnonzero(bad)]
    if lines:
        results.append(failure("fp16-underflow", f"EMA underflow predicate broken on "
                               f"{len(lines)} (step, element) pairs", lines=lines[:20],
                               repro=case.describe(),
                               diagnosis="a momentum that should be a subnormal is 0: "
                               "flush-to-zero" if any("m ≠ 0" in x for x in lines) else ""))
    else:
        results.append(passed("fp16-underflow", f"ema_underflow held for {steps} steps "
                              f"({int((robust & predicted).sum())} elements stay exactly 0, "
                              f"{int((robust & ~predicted).sum())} move)"))
    return results, []


@check("fp16-underflow", "fp16: steps lost and EMA terms underflowing exactly as predicted")
def fp16_underflow(ctx: Context) -> CheckResult:
    """In float16 a step θ − η·s is lost (θ bit-for-bit unchanged) exactly when
    ``bounds.lost_step`` says so — η < gap/2, or η = gap/2 with θ's significand even (ties to
    even), gap being the spacing toward the step, subnormals included — and the EMA term
    (1 − β)·g of a momentum stored in fp16 underflows to 0 exactly when ``bounds.ema_underflow``
    says so (g = 1e-6, β = 0.99 keeps m exactly 0 at every step; g = 1e-5 must give a
    subnormal m ≠ 0). Bounds: none; these are exact predicates, derived in docs/bounds.md
    ("exact low-precision predicates"). They apply to the storage rounding, so a target that
    computes in float32 and stores once must satisfy them too: the inputs are built so that
    θ − η·s is exact in the compute format (η a power of two or 3·2^k, exact there) and
    |(1 − β)·g| is at least 25% away from the underflow threshold 2^-25 (coefficient errors
    and double rounding are below 2^-10 relative), so every evaluation the profile allows
    rounds the same exact value once. Momentum with the parameter's dtype (the profile's
    default); skipped without float16. Known-bad: an fp16 implementation that flushes subnormal
    results to zero (its subnormal θ and m become 0)."""
    if "float16" not in ctx.dtypes():
        return CheckResult("fp16-underflow", "skip", "the target does not accept float16")
    results, notes = lost_steps(ctx, "fp16-underflow", "float16")
    ema, more = _ema_underflow(ctx)
    results += ema
    notes += more
    out = merge("fp16-underflow", results)
    if notes and out.status == "pass":
        out.summary = "; ".join([out.summary, *notes])
    return out


# --------------------------------------------------------------------------------- bf16

def _cancellation(ctx: Context) -> CheckResult:
    """Two steps; the second gradient cancels the decision variable to a relative offset δ on a
    grid, so elements fall on both sides of the derived bound."""
    dtype, algorithm = "bfloat16", ctx.algorithm
    n = 81
    delta = (np.arange(n) - n // 2) * 1e-3
    g0 = round_to(ctx.rng.choice([-1.0, 1.0], n) * ctx.rng.uniform(0.25, 2.0, n), dtype)
    hyper = default_hyper(algorithm, lr=2.0**-8)
    theta = round_to(ctx.rng.normal(0.0, 1.0, n), dtype)
    step = {"lion": spec.lion_step, "signum": spec.signum_step, "tiger": spec.tiger_step}
    h0 = {k: v for k, v in hyper.items() if algorithm == "tiger" or k != "accumulation_steps"}
    if algorithm == "tiger":
        h0["step"] = 0
    m1 = round_to(step[algorithm](theta, g0, np.zeros(n), **h0)[1], dtype)
    if algorithm == "lion":
        a, b = hyper["beta1"], 1.0 - hyper["beta1"]
    else:
        a, b = hyper["beta"], 1.0 - hyper["beta"]
    g1 = round_to(-a / b * m1 * (1.0 + delta), dtype)
    case = Case(algorithm, (theta,), ((g0,), (g1,)), hyper, param_dtype=dtype)
    return outcome("bf16-cancellation", case, ctx.run(case), ctx.target,
                   what="bf16 cancelling inputs")


def _decay(ctx: Context) -> tuple[CheckResult, str]:
    """θ = ±1 (one-element tensors, so Tiger's η = α·RMS(θ) = α exactly), η = 2^-9 = gap/2:
    θ − η·s is a bf16 midpoint and the decay ηλθ (λ = 2^-7) decides which way it rounds."""
    dtype = "bfloat16"
    eta, lam = 2.0**-9, 2.0**-7
    if not bounds.decay_noop(eta, lam, dtype):  # pragma: no cover - fixed inputs
        raise RuntimeError("the decay case must satisfy decay_noop")
    thetas = (np.array([1.0]), np.array([-1.0]))
    grads = ((np.array([1.0]), np.array([-1.0])),)
    hyper = default_hyper(ctx.algorithm, lr=eta, weight_decay=lam)
    case = Case(ctx.algorithm, thetas, grads, hyper, param_dtype=dtype)
    trace = ctx.run(case)
    result = outcome("bf16-cancellation", case, trace, ctx.target, what="bf16 decay")
    a = ctx.profile.arithmetic(dtype, None)
    bf16_compute = a.compute == "bfloat16"
    if a.storage_roundings == 2 or (bf16_compute and a.param_form == "decay_first"):
        expect, what = "lost", "decay_noop: fl(1 − ηλ) = 1 (or the decayed θ is stored first)"
    elif not bf16_compute and get_format(a.compute).contains(get_format("float32")):
        expect, what = "applied", "the decay is applied in the compute format before one rounding"
    else:
        return result, (f"decay no-op not asserted: compute {a.compute} with param form "
                        f"{a.param_form!r} may or may not lose it")
    lines = []
    for i, (th, g) in enumerate(zip(thetas, grads[0], strict=True)):
        s = np.sign(g)
        exact = step_exact(ctx.algorithm, th, g, hyper)
        bound = bounds.param_update_bound(th, eta, lam, s, compute=a.compute,
                                          storage=a.compute, form=a.param_form)
        midpoint = th - eta * s
        if expect == "applied" and not np.all(np.abs(exact - midpoint) > bound):
            continue  # pragma: no cover - the decay term 2^-16 exceeds an fp32 bound by far
        want = round_to(exact if expect == "applied" else midpoint, dtype)
        got = trace.params[1][i]
        if not np.array_equal(got, want):
            lines.append(f"param {i}: θ={float(th[0]).hex()} η={eta.hex()} λ={lam.hex()} "
                         f"s={s[0]:+.0f} => observed {float(got[0]).hex()} expected "
                         f"{float(want[0]).hex()}: decay {expect} ({what})")
    if lines:
        return failure("bf16-cancellation", f"bf16 decay: expected the decay {expect}",
                       lines=lines, repro=case.describe(),
                       diagnosis="the decay was lost: computed or stored in bf16 although the "
                       "profile declares a wider compute" if expect == "applied" else
                       "the decay was applied although fl_bf16(1 − ηλ) = 1"), ""
    return merge("bf16-cancellation", [result, passed("bf16-cancellation",
                                                       f"decay {expect} as predicted")]), ""


def step_exact(algorithm: str, theta: np.ndarray, g: np.ndarray, hyper: dict[str, Any]
               ) -> np.ndarray:
    """The spec's θ' (float64) for one step from the fresh state."""
    h = dict(hyper)
    if algorithm == "tiger":
        h["step"] = 0
    else:
        h.pop("accumulation_steps", None)
    fn = {"lion": spec.lion_step, "signum": spec.signum_step, "tiger": spec.tiger_step}
    return fn[algorithm](theta, g, np.zeros_like(theta), **h)[0]


def _beta_representation(ctx: Context) -> CheckResult:
    """First step from m = 0: m₁ = ŵ·g shows the weight of g the target used."""
    dtype = "bfloat16"
    key = _ema_beta_key(ctx.algorithm)
    g = round_to(np.array([1.0, -1.0, 0.5, 3.0, -2.0, 0.75]), dtype)
    results = []
    for beta in (0.99, 0.999):
        rep = bounds.beta_representation(beta, dtype)
        hyper = default_hyper(ctx.algorithm, lr=2.0**-8, **{key: beta})
        theta = round_to(np.full(g.shape, 0.5), dtype)
        case = Case(ctx.algorithm, (theta,), ((g,),), hyper, param_dtype=dtype)
        trace = ctx.run(case)
        r = outcome("bf16-cancellation", case, trace, ctx.target,
                    what=f"bf16 β representation, β = {beta}")
        m1 = trace.momenta[1][0] if trace.momenta[1] is not None else None
        summary = (f"β = {beta}: bf16 β̂ = {float(rep.represented)}, horizon "
                   f"{float(rep.horizon):.4g}{' (EMA frozen)' if rep.frozen else ''}")
        if m1 is not None:
            ratio = m1 / g
            w_bad = round_to(1.0 - float(rep.represented), dtype)
            used_bad = bool(np.all(ratio == w_bad)) and w_bad != round_to(1.0 - beta, dtype)
            if used_bad:
                diag = (f"m₁/g = {float(w_bad)} = 1 − bf16(β): the weight of g is formed from the "
                        f"represented β (relative error {float(rep.weight_relative_error):.3g}"
                        f"{', the EMA is frozen' if rep.frozen else ''}), not RN(1 − β)")
                if r.status == "fail":
                    r.diagnosis = diag
                elif ctx.profile.c_form == "muladd":
                    r = failure("bf16-cancellation", f"{summary}: {diag}", repro=case.describe(),
                                diagnosis="declare c_form='muladd_one_minus_beta' if intended")
            summary += f"; observed m₁/g = {float(ratio[0])}"
        results.append(r if r.status != "pass" else passed("bf16-cancellation", summary,
                                                           r.counts))
    return merge("bf16-cancellation", results)


@check("bf16-cancellation", "bf16: flips only inside the bound, lost updates and decay no-ops "
       "as predicted, β representation")
def bf16_cancellation(ctx: Context) -> CheckResult:
    """In bfloat16 (u = 2^-8) rounding is large enough to matter for the sign itself. Four parts:
    (1) a second gradient built to cancel the decision variable to a relative offset δ on a grid
    of ±4% — a sign may differ from the spec's only where |decision| is within its derived
    bound (``bounds.c_error_bound`` / ``momentum_update_bound`` for the declared c form and
    compute precision, docs/bounds.md "the sign decision"), judged per element; (2) lost updates
    exactly where ``bounds.lost_step`` predicts (inputs exact in the compute format, as in
    fp16-underflow); (3) decay: θ = ±1, η = 2^-9 = gap/2 and λ = 2^-7, so θ − η·s is a bf16
    midpoint and the decay ηλθ = 2^-16 decides the rounding: a target computing in bf16 with the
    decay-first form (or storing the decayed θ first) must lose the decay exactly
    (``bounds.decay_noop``: fl_bf16(1 − ηλ) = 1 when ηλ <= 2^-9) and round the tie to even,
    while a target computing in float32 and storing once must apply it (2^-16 is far outside
    the float32 evaluation bound ``param_update_bound``), landing on RN_bf16 of the exact value;
    (4) β representation for targets computing in bf16 (``bounds.beta_representation``): the
    first momentum m₁ = ŵ·g shows the weight used; a target declaring the muladd form must use
    RN(1 − β), not 1 − bf16(β) (17% off for β = 0.99; 0 — a frozen EMA — for β = 0.999).
    Skipped without bfloat16. Known-bad: a bf16-compute implementation that forms 1 − β in bf16
    while declaring the muladd form (hard flips in (1), wrong m₁ in (4))."""
    if "bfloat16" not in ctx.dtypes():
        return CheckResult("bf16-cancellation", "skip", "the target does not accept bfloat16")
    results = [_cancellation(ctx)]
    lost, notes = lost_steps(ctx, "bf16-cancellation", "bfloat16")
    results += lost
    decay, note = _decay(ctx)
    results.append(decay)
    if note:
        notes.append(note)
    if _compute(ctx, "bfloat16") == "bfloat16":
        results.append(_beta_representation(ctx))
    else:
        notes.append(f"β representation not asserted: compute is "
                     f"{_compute(ctx, 'bfloat16')}")
    out = merge("bf16-cancellation", results)
    if notes and out.status == "pass":
        out.summary = "; ".join([out.summary, *notes])
    return out
