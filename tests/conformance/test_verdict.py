"""judge_step: correctly rounded low-precision implementations pass (with ambiguous flips only
where the bound allows them), and each classic bug is caught with a one-line report."""

from __future__ import annotations

import numpy as np
import pytest

from lionspec.conformance.verdict import AMBIGUOUS, FAILURE, Arithmetic, judge_step
from lionspec.spec.formats import next_away_from_zero, round_to

F32 = np.float32


def store(x32: np.ndarray, dtype: str) -> np.ndarray:
    """Round float32 results once into the storage dtype; return float64 holding the values."""
    return round_to(np.asarray(x32, dtype=np.float64), dtype)


def sign32(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), x, np.sign(x))


def lion32(p, g, m, *, lr, beta1=0.9, beta2=0.99, weight_decay=0.0, pdt="float32", mdt="float32",
           order="lion", decay="decoupled", sign=sign32):
    """A numpy Lion computing in float32 (one rounding per op), stored once per output."""
    p32, g32, m32 = (np.asarray(x, dtype=F32) for x in (p, g, m))
    if decay == "coupled":
        g32 = g32 + F32(weight_decay) * p32
    c = F32(beta1) * m32 + F32(1.0 - beta1) * g32
    new_m = F32(beta2) * m32 + F32(1.0 - beta2) * g32
    d = new_m if order == "signum" else c
    keep = F32(1.0 - lr * weight_decay) if decay == "decoupled" else F32(1.0)
    new_p = p32 * keep - F32(lr) * sign(d)
    return store(new_p, pdt), store(new_m, mdt)


def inputs(rng, n, dtype, beta1=0.9, near=True):
    p = round_to(rng.normal(0, 0.02, n), dtype)
    m = round_to(rng.normal(0, 1e-3, n), dtype)
    g = round_to(rng.normal(0, 1e-3, n), dtype)
    if near:  # half of the elements: g on the cancelling value of c, ± a few ulps
        k = n // 2
        g[:k] = round_to(-beta1 * m[:k] / (1 - beta1), dtype)
        g[k // 2: k] = next_away_from_zero(g[k // 2: k], dtype)
    g[:8] = 0.0
    m[:4] = 0.0
    return p, g, m


@pytest.mark.parametrize(("pdt", "mdt"), [("float32", "float32"), ("bfloat16", "float32"),
                                          ("bfloat16", "bfloat16"), ("float16", "float32")])
def test_correctly_rounded_lion_passes_with_ambiguous_flips_only_near_zero(pdt, mdt):
    rng = np.random.default_rng(0)
    p, g, m = inputs(rng, 20_000, pdt)
    m = round_to(m, mdt)
    hyper = dict(lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.1)
    new_p, new_m = lion32(p, g, m, **hyper, pdt=pdt, mdt=mdt)
    v = judge_step("lion", p, g, m, new_p, new_m, hyper=hyper,
                   arithmetic=Arithmetic(compute="float32", param_storage=pdt,
                                         momentum_storage=mdt, c_form="muladd"))
    assert v.ok, v.report()
    counts = v.counts()["param"]
    assert counts["exact"] + counts["within bound"] + counts["ambiguous flip"] == p.size


def test_float32_near_cancellation_produces_ambiguous_flips_that_are_allowed():
    rng = np.random.default_rng(1)
    p, g, m = inputs(rng, 20_000, "float32")
    hyper = dict(lr=1e-3, weight_decay=0.0)
    new_p, new_m = lion32(p, g, m, **hyper)
    v = judge_step("lion", p, g, m, new_p, new_m, hyper=hyper,
                   arithmetic=Arithmetic(compute="float32", c_form="muladd"))
    assert v.ok, v.report()
    assert v.counts()["param"]["ambiguous flip"] > 0  # the near-cancelling half does flip


KNOWN_BAD = {
    "signum order": dict(order="signum"),
    "coupled decay": dict(decay="coupled"),
    "torch.sign(NaN) = 0": dict(sign=lambda x: np.where(np.isnan(x), F32(0.0), np.sign(x))),
    "where(c > 0, -lr, lr)": dict(sign=lambda x: np.where(x > 0, F32(1.0), F32(-1.0))),
    "truncated store": None,  # handled below
}


@pytest.mark.parametrize("bug", [b for b in KNOWN_BAD if KNOWN_BAD[b] is not None])
def test_each_classic_lion_bug_is_caught(bug):
    rng = np.random.default_rng(2)
    p, g, m = inputs(rng, 4000, "float32", near=False)
    g[100] = np.nan
    m[200:300] = round_to(-10 * g[200:300], "float32")  # c and the new m of opposite signs
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.5, weight_decay=0.5)
    new_p, new_m = lion32(p, g, m, **hyper, **KNOWN_BAD[bug])
    v = judge_step("lion", p, g, m, new_p, new_m, hyper=hyper,
                   arithmetic=Arithmetic(compute="float32", c_form="muladd"))
    assert not v.ok, f"{bug} was not caught"
    assert all(" => observed " in line and " expected " in line for line in v.lines)


def test_a_truncating_bf16_store_is_caught():
    rng = np.random.default_rng(3)
    p, g, m = inputs(rng, 4000, "bfloat16", near=False)
    hyper = dict(lr=1e-2, weight_decay=0.1)
    new_p, new_m = lion32(p, g, m, **hyper, pdt="float32")
    bits = new_p.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)  # chop to bf16
    chopped = bits.view(np.float32).astype(np.float64)
    v = judge_step("lion", p, g, m, chopped, round_to(new_m, "float32"), hyper=hyper,
                   arithmetic=Arithmetic(compute="float32", param_storage="bfloat16"))
    assert not v.ok


def test_zero_decision_variable_never_allows_a_move():
    # m = g = 0: c is 0 in every arithmetic; sign(0) = ±1 must be a failure, not "ambiguous"
    p, g, m = np.full(4, 0.5), np.zeros(4), np.zeros(4)
    bad_p = p - 1e-3  # moved as if sign(0) = +1
    v = judge_step("lion", p, g, m, bad_p, np.zeros(4), hyper=dict(lr=1e-3),
                   arithmetic=Arithmetic(compute="float32"))
    assert (v.param == FAILURE).all()
    assert not (v.param == AMBIGUOUS).any()


def tiger32(p, g, m, *, step, lr, beta, weight_decay, k, role="weight", bug=None):
    p32, g32, m32 = (np.asarray(x, dtype=F32) for x in (p, g, m))
    first = step % k == 0 or bug == "beta every micro-step"
    w = (1.0 - beta) / (1 if bug == "no /k" else k)
    new_m = (F32(beta) * m32 if first else m32) + F32(w) * g32
    if (step + 1) % k and bug != "moves every micro-step":
        return p.copy(), store(new_m, "float32")
    eta = F32(lr) * np.sqrt(np.mean(p32 * p32, dtype=F32)) if role == "weight" else F32(lr / 2)
    wd = weight_decay if role == "weight" else 0.0
    new_p = p32 - eta * (sign32(new_m) + F32(wd) * p32)
    return store(new_p, "float32"), store(new_m, "float32")


@pytest.mark.parametrize("bug", [None, "beta every micro-step", "no /k", "moves every micro-step"])
def test_tiger_window_is_judged_step_by_step(bug):
    rng = np.random.default_rng(4)
    p, m = round_to(rng.normal(0, 0.02, 512), "float32"), np.zeros(512)
    hyper = dict(lr=1e-3, beta=0.965, weight_decay=0.01, accumulation_steps=3)
    ok = True
    for t in range(6):
        g = round_to(rng.normal(0, 1e-3, 512), "float32")
        new_p, new_m = tiger32(p, g, m, step=t, lr=1e-3, beta=0.965, weight_decay=0.01, k=3,
                               bug=bug)
        v = judge_step("tiger", p, g, m, new_p, new_m, hyper={**hyper, "step": t},
                       arithmetic=Arithmetic(compute="float32", c_form="muladd"))
        ok &= v.ok
        p, m = new_p, new_m
    assert ok is (bug is None)


def test_tiger_nan_rule_keeps_momentum_and_shrinks():
    p = np.array([1.0, -2.0, 0.5])
    g = round_to([0.1, np.nan, 0.2], "float32")
    m = round_to([0.01, 0.02, -0.03], "float32")
    hyper = dict(step=0, lr=1e-3, role="scale", shrink_ratio=0.9)
    good_p = store((np.asarray(p, F32) - F32(1)) * F32(0.9) + F32(1), "float32")
    v = judge_step("tiger", p, g, m, good_p, m.copy(), hyper=hyper,
                   arithmetic=Arithmetic(compute="float32"))
    assert v.ok, v.report()
    wrong_centre = store(np.asarray(p, F32) * F32(0.9), "float32")
    assert not judge_step("tiger", p, g, m, wrong_centre, m.copy(), hyper=hyper,
                          arithmetic=Arithmetic(compute="float32")).ok
    touched_m = m + 0.0
    touched_m[0] = 0.5 * m[0]
    assert not judge_step("tiger", p, g, m, good_p, touched_m, hyper=hyper,
                          arithmetic=Arithmetic(compute="float32")).ok


def test_zero_dim_and_empty():
    for shape in [(), (0,)]:
        p, g, m = np.full(shape, 0.5), np.full(shape, 1.0), np.zeros(shape)
        new_p, new_m = lion32(p, g, m, lr=0.1)
        v = judge_step("lion", p, g, m, new_p, new_m, hyper=dict(lr=0.1),
                       arithmetic=Arithmetic())
        assert v.ok and v.param.shape == shape
