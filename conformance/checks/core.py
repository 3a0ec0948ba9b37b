"""The core checks: per-step values and signs, update order, weight decay, sign(0), NaN/Inf,
elementwise independence and the first step.

Every check judges per element with :func:`~lionspec.conformance.verdict.judge_step` (derived
bounds, ambiguous flips allowed only inside the decision variable's bound) and, on a deviation,
names the variation of the spec that explains it (:func:`._support.diagnose`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lionspec.spec.formats import round_to

from ..strategies import explore, hard_grad, values
from ..target import Case, Trace
from ._support import (
    FAIL,
    CheckResult,
    Context,
    check,
    failure,
    judge_trace,
    merge,
    outcome,
    passed,
)

__all__ = ["DEFAULT_HYPER", "decision_weights", "default_hyper", "elementwise", "first_step",
           "multi_step", "nan_inf", "sign_zero", "single_step", "update_order", "weight_decay"]

#: The hyperparameters the checks use unless a check needs others.
DEFAULT_HYPER: dict[str, dict[str, Any]] = {
    "lion": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1},
    "signum": {"lr": 1e-3, "beta": 0.9, "weight_decay": 0.1},
    "tiger": {"lr": 1e-3, "beta": 0.965, "weight_decay": 0.01, "accumulation_steps": 1},
}


def default_hyper(algorithm: str, **changes: Any) -> dict[str, Any]:
    return {**DEFAULT_HYPER[algorithm], **changes}


def decision_weights(algorithm: str, hyper: dict[str, Any], t: int = 0) -> tuple[float, float]:
    """(a, b) of the decision variable a·m + b·g at micro-step ``t``."""
    if algorithm == "lion":
        return hyper["beta1"], 1.0 - hyper["beta1"]
    k = hyper.get("accumulation_steps", 1)
    beta = hyper["beta"]
    return (beta if t % k == 0 else 1.0), (1.0 - beta) / k


def _st() -> Any:
    import hypothesis.strategies as st

    return st


def _momentum_dtypes(ctx: Context, dtype: str) -> list[str | None]:
    extra = [m for m in ctx.profile.momentum_dtypes if m != dtype]
    return [None, *extra]


def _draw_case(ctx: Context, dtype: str, mdt: str | None, steps: int) -> Callable[[Any], Case]:
    """Drawn cases: one tensor, ``steps`` steps, gradients free or cancelling the decision
    variable computed from the spec's momentum at that step (hard for any close arithmetic)."""
    from lionspec import spec

    st = _st()
    algorithm = ctx.algorithm
    inject = steps == 1 and ctx.profile.has("inject_momentum")

    def draw(data: Any) -> Case:
        n = data.draw(st.integers(1, ctx.settings.max_size), label="elements")
        theta = np.array(data.draw(st.lists(values(dtype), min_size=n, max_size=n),
                                   label=f"param ({dtype})"))
        m_dtype = mdt or dtype
        m = (np.array(data.draw(st.lists(values(m_dtype, max_magnitude=10.0), min_size=n,
                                         max_size=n), label=f"exp_avg ({m_dtype})"))
             if inject else np.zeros(n))
        hyper = default_hyper(algorithm)
        grads = []
        m_spec = m
        for t in range(steps):
            kind = data.draw(st.sampled_from(["cancelling", "free"]), label=f"grad {t} kind")
            if kind == "free":
                g = np.array(data.draw(st.lists(values(dtype), min_size=n, max_size=n),
                                       label=f"grad {t}"))
            else:
                offsets = np.array(data.draw(st.lists(st.integers(-2, 2), min_size=n,
                                                      max_size=n), label=f"grad {t} ulps"))
                a, b = decision_weights(algorithm, hyper, t)
                g = hard_grad(m_spec, a, b, dtype, offsets)
            grads.append((g,))
            h = dict(hyper)
            if algorithm == "tiger":
                h["step"] = t
            else:
                h.pop("accumulation_steps", None)
            step = {"lion": spec.lion_step, "signum": spec.signum_step,
                    "tiger": spec.tiger_step}[algorithm]
            with np.errstate(all="ignore"):
                m_spec = round_to(step(theta, g, m_spec, **h)[1], m_dtype)
        return Case(algorithm, (theta,), tuple(grads), hyper, param_dtype=dtype,
                    momentum_dtype=mdt, exp_avgs=(m,) if inject else None)

    return draw


def _explore_dtypes(ctx: Context, check_id: str, steps: int, what: str) -> CheckResult:
    """Draw cases per (param dtype, momentum dtype) and judge them; the minimal failing case
    hypothesis shrinks to is diagnosed and reported."""
    results = []
    for dtype in ctx.dtypes():
        for mdt in _momentum_dtypes(ctx, dtype):
            label = dtype + (f" + {mdt} momentum" if mdt else "")

            def judge(case: Case) -> tuple[Case, Trace, bool]:
                trace = ctx.run(case)
                return case, trace, judge_trace(case, trace, ctx.target, limit=0).ok

            found, count, report = explore(ctx.settings, _draw_case(ctx, dtype, mdt, steps),
                                           judge, lambda r: not r[2])
            if found is not None:
                case, trace, _ = found
                result = outcome(check_id, case, trace, ctx.target, what=f"{what}, {label}")
                result.repro = f"{result.repro}\nhypothesis: {report.strip()}".strip()
                return result
            results.append(passed(check_id, f"{label}: {count} cases"))
    return merge(check_id, results)


@check("single-step", "One step per dtype from drawn inputs, within the derived bounds")
def single_step(ctx: Context) -> CheckResult:
    """One step per parameter dtype (and each selectable momentum dtype) from drawn θ (and m,
    where the target lets the suite set it), with gradients either drawn freely or built to
    cancel the decision variable to within a few ulps. Every element of θ' and m' must be
    exact, within the derived bound, or an ambiguous flip: a sign that differs from the exact
    one only where |decision| is within its rounding bound. Bounds: ``docs/bounds.md`` (c-error
    by evaluation form, momentum and parameter update bounds, one or two storage roundings).
    Known-bad: a kernel that selects the update with ``where(c > 0, −η, +η)`` (sign(0) =
    sign(NaN) = −1)."""
    return _explore_dtypes(ctx, "single-step", 1, "single step")


@check("multi-step", "Several steps, each judged from the target's own state (check, resync)")
def multi_step(ctx: Context) -> CheckResult:
    """Several steps from the fresh state; each step is judged from the target's own stored θ
    and m (check, then resync), so a legitimate flip at one step cannot make later steps fail.
    Gradients cancel the decision variable as the spec's momentum evolves. Known-bad: SIGNUM
    that updates θ with the old momentum before updating m."""
    return _explore_dtypes(ctx, "multi-step", ctx.settings.steps, "multi-step")


# ------------------------------------------------------------------------------- update order

def _order_case(algorithm: str, dtype: str) -> tuple[Case, dict[str, Callable[..., Any]]]:
    """Two steps from θ = 1, λ = 0, g₀ = 1: the second gradient's elements are chosen so that
    the canonical order moves θ the other way from each named wrong order."""
    lr = 2.0**-6
    if algorithm == "lion":
        hyper = default_hyper("lion", lr=lr, weight_decay=0.0)
        g1 = np.array([-0.5, -0.05])  # c<0 but m'>0 | c>0 but g<0
        wrong = {
            "SIGNUM order (m updated with β2 first, then sign(m'))":
                lambda m, g: hyper["beta2"] * m + (1 - hyper["beta2"]) * g,
            "sign of the gradient only": lambda m, g: g,
            "sign of the old momentum": lambda m, g: m + 0 * g,
        }
    else:
        hyper = default_hyper(algorithm, lr=lr, weight_decay=0.0)
        g1 = np.array([-2.0, -0.5])  # m'<0 but m>0 | m'>0 but g<0
        wrong = {
            "θ updated with the old momentum, before m": lambda m, g: m + 0 * g,
            "sign of the gradient only": lambda m, g: g,
        }
    g0 = np.ones(2)
    theta = np.ones(2)
    case = Case(algorithm, (theta,), ((round_to(g0, dtype),), (round_to(g1, dtype),)), hyper,
                param_dtype=dtype)
    return case, wrong


@check("update-order", "Update order, on inputs constructed to tell Lion order from SIGNUM order")
def update_order(ctx: Context) -> CheckResult:
    """Lion takes the sign of c = β1·m + (1 − β1)·g *before* updating m with β2; SIGNUM and
    Tiger update m first and take sign(m'). Random inputs almost never tell these apart (the
    signs agree unless m and g disagree in a narrow band), so the inputs are constructed: after
    a first step with g = 1, the second gradient is chosen per element so that the canonical
    order and each named wrong order (SIGNUM order for Lion; the old momentum or the gradient
    alone) move θ in opposite directions. Known-bad: Lion that takes sign(m') after updating m
    with β2 (SIGNUM order)."""
    results = []
    for dtype in ctx.dtypes():
        case, wrong = _order_case(ctx.algorithm, dtype)
        trace = ctx.run(case)
        r = outcome("update-order", case, trace, ctx.target, what=dtype)
        if r.status == FAIL and not r.variation:
            r.diagnosis = _order_diagnosis(case, trace, wrong) or r.diagnosis
        results.append(r)
    return merge("update-order", results)


def _order_diagnosis(case: Case, trace: Trace, wrong: dict[str, Callable[..., Any]]) -> str:
    moved = np.sign(trace.params[1][0] - trace.params[2][0])  # +1: θ went down (sign +1)
    m = trace.momenta[1][0] if trace.momenta[1] is not None else None
    if m is None:
        return ""
    g = case.grads[1][0]
    for name, fn in wrong.items():
        if np.array_equal(np.sign(fn(m, g)), moved):
            return f"θ moved as {name} would"
    return ""


# ------------------------------------------------------------------------------- weight decay

@check("weight-decay", "Decoupled weight decay, scaled by the current lr (λ > 0, lr changed)")
def weight_decay(ctx: Context) -> CheckResult:
    """With λ = 0.5 and the learning rate changed after construction at every step, θ must
    follow θ' = θ·(1 − η_t·λ) − η_t·sign(·): decoupled (not added to the gradient), multiplied
    by the *current* η_t (not the initial one, not unscaled). Elements with a small gradient
    and a large λθ of the other sign tell coupled L2 decay apart (its sign flips). Known-bad:
    coupled decay g ← g + λθ (diagnosed ``decay:coupled``)."""
    lrs = (2.0**-6, 2.0**-5, 2.0**-7) if ctx.profile.has("lr_change") else None
    results = []
    for dtype in ctx.dtypes():
        theta = round_to(np.array([2.0, -2.0, 1.0, -0.5, 3.0, 0.25]), dtype)
        g = round_to(np.array([-0.1, 0.1, 1.0, -1.0, -0.05, 0.5]), dtype)
        hyper = default_hyper(ctx.algorithm, lr=2.0**-6, weight_decay=0.5)
        steps = len(lrs) if lrs else 3
        case = Case(ctx.algorithm, (theta,), tuple((g,) for _ in range(steps)), hyper,
                    param_dtype=dtype, lrs=lrs)
        results.append(outcome("weight-decay", case, ctx.run(case), ctx.target, what=dtype))
    return merge("weight-decay", results)


# ---------------------------------------------------------------------------------- sign(0)

@check("sign-zero", "sign(0) = 0: zero gradients from zero momentum only decay θ, no drift")
def sign_zero(ctx: Context) -> CheckResult:
    """Zero gradients from the fresh (zero) momentum make the decision variable exactly 0 in
    any arithmetic, so θ must only decay — θ' = θ·(1 − η·λ), and bit-for-bit unchanged with
    λ = 0 — for every step, including ±0, subnormal and large θ. An implementation that takes
    sign(0) as ±1 drifts by η per step; no sign flip is ambiguous here. Known-bad: sign taken
    as ``where(c >= 0, 1, −1)`` (diagnosed ``sign0:+1``)."""
    results = []
    for dtype in ctx.dtypes():
        from lionspec.spec.formats import get_format

        tiny = float(get_format(dtype).subnormal_min)
        theta = round_to(np.array([1.0, -1.0, 0.0, -0.0, tiny, -tiny, 100.0, 0.3]), dtype)
        zeros = np.zeros_like(theta)
        for wd in (0.0, 0.1):
            hyper = default_hyper(ctx.algorithm, lr=2.0**-6, weight_decay=wd)
            case = Case(ctx.algorithm, (theta,), tuple((zeros,) for _ in range(3)), hyper,
                        param_dtype=dtype)
            results.append(outcome("sign-zero", case, ctx.run(case), ctx.target,
                                   what=f"{dtype}, λ = {wd}"))
    return merge("sign-zero", results)


# ----------------------------------------------------------------------------------- NaN/Inf

@check("nan-inf", "NaN and ±Inf gradients per the spec's policy")
def nan_inf(ctx: Context) -> CheckResult:
    """A NaN gradient element makes Lion's and SIGNUM's θ and m NaN at that element (IEEE
    propagation; torch.sign(NaN) = 0 on CPU must not leak in), leaving other elements alone;
    ±Inf gives sign ±1 and an infinite momentum. Tiger instead applies its NaN rule to the
    whole tensor: m kept, θ ← (θ − centre)·s + centre. Two steps, so the NaN momentum is used
    again. The diagnosis names the NaN policy observed (freeze, skip, where-shortcut, ...).
    Known-bad: sign(NaN) = 0, as torch.sign does on CPU (diagnosed ``nan:freeze``)."""
    results = []
    nan, inf = float("nan"), float("inf")
    for dtype in ctx.dtypes():
        theta = round_to(np.array([1.0, -1.0, 0.5, 2.0, -0.25, 0.75]), dtype)
        g0 = round_to(np.array([nan, inf, -inf, 1.0, -1.0, 0.5]), dtype)
        g1 = round_to(np.array([0.5, 0.5, 0.5, -1.0, nan, 0.25]), dtype)
        case = Case(ctx.algorithm, (theta,), ((g0,), (g1,)),
                    default_hyper(ctx.algorithm, lr=2.0**-6), param_dtype=dtype)
        results.append(outcome("nan-inf", case, ctx.run(case), ctx.target, what=dtype))
    return merge("nan-inf", results)


# ----------------------------------------------------------------------------- elementwise

@check("elementwise", "Elementwise independence of the pointwise algorithms",
       algorithms=("lion", "signum"))
def elementwise(ctx: Context) -> CheckResult:
    """Lion and SIGNUM are pointwise: changing one element's gradient (to another value, to 0,
    to NaN) must leave every other element of θ and m bit-for-bit as it was. Catches
    implementations that normalise, clip or skip by tensor (Tiger is not pointwise: its RMS and
    NaN flag are per tensor, see the Tiger checks). Known-bad: a per-tensor gradient clip
    before the step."""
    dtype = ctx.dtypes()[0]
    rng = ctx.rng
    n = 16
    theta = round_to(rng.normal(0, 1, n), dtype)
    grads = [round_to(rng.normal(0, 1, n), dtype) for _ in range(3)]
    base = Case(ctx.algorithm, (theta,), tuple((g,) for g in grads),
                default_hyper(ctx.algorithm), param_dtype=dtype)
    ref = ctx.run(base)
    for k, value in ((3, 1e3), (7, 0.0), (11, float("nan"))):
        changed = [g.copy() for g in grads]
        for g in changed:
            g[k] = value
        case = base.with_(grads=tuple((g,) for g in changed))
        trace = ctx.run(case)
        for t in range(1, case.steps + 1):
            others = np.ones(n, dtype=bool)
            others[k] = False
            a, b = ref.params[t][0][others], trace.params[t][0][others]
            if not np.array_equal(a.view(np.uint64), b.view(np.uint64)):
                bad = np.flatnonzero(a.view(np.uint64) != b.view(np.uint64))
                idx = np.flatnonzero(others)[bad]
                return failure("elementwise", f"changing grad[{k}] to {value!r} changed other "
                               f"elements of θ at step {t}: {idx.tolist()}",
                               lines=[f"param[{i}] => {ref.params[t][0][i]!r} became "
                                      f"{trace.params[t][0][i]!r}" for i in idx[:10]],
                               repro=case.describe())
    return passed("elementwise", f"{dtype}: 3 single-element changes left the other {n - 1} "
                  "elements bit-for-bit unchanged")


# ---------------------------------------------------------------------------- first step

@check("first-step", "First-step momentum initialisation: m₀ = 0", requires=("momentum",))
def first_step(ctx: Context) -> CheckResult:
    """The momentum starts at 0, so after the first step m₁ = (1 − β₂)·g (Lion), (1 − β)·g
    (SIGNUM) or (1 − β)/k·g (Tiger), and Lion's first decision is sign((1 − β₁)·g). Catches
    momenta initialised to the first gradient, bias-corrected momenta and lazily created state
    that skips the first update. Known-bad: a momentum initialised to the first gradient."""
    results = []
    for dtype in ctx.dtypes():
        g = round_to(np.array([1.0, -0.5, 0.25, -2.0, 0.0, 3.0]), dtype)
        theta = round_to(np.array([0.5, 0.5, -0.5, 1.0, 1.0, -1.0]), dtype)
        case = Case(ctx.algorithm, (theta,), ((g,),), default_hyper(ctx.algorithm),
                    param_dtype=dtype)
        trace = ctx.run(case)
        r = outcome("first-step", case, trace, ctx.target, what=dtype)
        if r.status == FAIL and trace.momenta[1] is not None:
            m1 = trace.momenta[1][0]
            if np.array_equal(m1, g):
                r.diagnosis = "the momentum was initialised to the first gradient (m₁ = g)"
        results.append(r)
    return merge("first-step", results)


