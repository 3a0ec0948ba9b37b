"""Meta-tests of lionspec.spec.bounds: every bound holds (zero violations on >= 1M adversarial
samples per form and format, emulated with per-operation correct rounding), is not vacuous
(tightness), and is able to fail (wrong emulations violate it). Predicates are checked exactly.

Run with ``-s`` to print the measured ratios (docs/bounds.md quotes them).
"""

from __future__ import annotations

import doctest
import math
import zlib
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lionspec.spec import bounds
from lionspec.spec.bounds import (
    SIGN_AGREE,
    SIGN_AMBIGUOUS,
    SIGN_FAILURE,
    VALUE_EXACT,
    VALUE_FAILURE,
    VALUE_WITHIN,
    accumulation_bound,
    beta_representation,
    c_error_bound,
    classify_sign,
    classify_value,
    coefficient_error,
    decay_noop,
    ema_underflow,
    gamma,
    lost_step,
    momentum_update_bound,
    param_update_bound,
    summarize_signs,
    unit_roundoff,
    weight_error,
)
from lionspec.spec.formats import FORMATS, get_format, round_to, ulp

from ._emulate import (
    F32,
    Arith,
    coefficient,
    dd_abs_diff,
    dd_div_int,
    exact_sum,
    log_uniform_values,
    rn_fraction,
    two_prod,
    two_sum,
    ulps_shift,
)

BF16 = ml_dtypes.bfloat16
LOW = ("float32", "float16", "bfloat16")
BETAS = np.array(
    [0.9, 0.99, 0.965, 0.95, 0.98, 0.999, 0.5, 0.0, 0.945, 0.3, 0.75, 0.9999, 0.1,
     0.990234375 - 2.0**-30,   # just below a bf16 midpoint: RN and RN(RN_fp32) differ
     (2027.5 / 2048) - 2.0**-40]  # just below an fp16 midpoint
)  # fmt: skip
N = 1_000_000
#: Conservative violation test: flag |err| > B·(1 − 2**-30) (the reference c is exact to ~2**-100
#: of Σ|terms| and float64 evaluation of |err| is relative 2**-52, both far below 2**-30·B).
SLACK = 1.0 - 2.0**-30
RESULTS: dict[str, float] = {}


def seed(*parts) -> int:
    """A per-test seed that does not depend on PYTHONHASHSEED."""
    return zlib.crc32(repr(parts).encode())


def record(key: str, value: float) -> None:
    RESULTS[key] = value
    print(f"[bounds] {key}: {value:.4g}")


def test_doctests():
    assert doctest.testmod(bounds, raise_on_error=False).failed == 0


# =============================================================================== sampling


def c_samples(rng, n, fmt, hi_margin=16):
    """Adversarial (m, g, β): values of ``fmt``; most pairs nearly cancel (g within ±4 ulps of
    −β·m/(1−β)), across the whole exponent range including subnormals and products that underflow;
    some independent pairs, signed zeros, and β from BETAS plus uniform random β."""
    f = get_format(fmt)
    beta = rng.choice(BETAS, n)
    rnd = rng.random(n) < 0.1
    beta[rnd] = rng.random(np.count_nonzero(rnd)) * 0.9999  # β/(1−β) <= 2**14 < 2**hi_margin
    top = f.emax - hi_margin
    lo = f.emin - f.p + 1
    m = log_uniform_values(rng, n, f, lo, top)
    kind = rng.integers(0, 20, n)
    small = kind >= 16  # magnitudes near λmin: the underflow terms matter
    m[small] = log_uniform_values(rng, np.count_nonzero(small), f, lo, f.emin + 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(beta < 1, beta / (1 - beta), 0.0)
    g = ulps_shift(round_to(-r * m, f), rng.integers(-4, 5, n), f)
    indep = kind == 0
    g[indep] = log_uniform_values(rng, np.count_nonzero(indep), f, lo, top)
    z = kind == 1
    g[z] = np.copysign(0.0, rng.standard_normal(np.count_nonzero(z)))
    z = kind == 2
    m[z] = np.copysign(0.0, rng.standard_normal(np.count_nonzero(z)))
    same = kind == 3  # same magnitude, random signs: no cancellation in c, cancellation in m − g
    g[same] = ulps_shift(m[same] * rng.choice([-1.0, 1.0], np.count_nonzero(same)),
                         rng.integers(-3, 4, np.count_nonzero(same)), f)  # fmt: skip
    return m, g, beta


def exact_c(m, g, beta):
    """c = β·m + (1 − β)·g as a double-double (exact to ~2**-100·Σ|terms|)."""
    p1, p2 = two_prod(beta, m)
    w1, w2 = two_sum(np.ones_like(beta), -beta)
    q1, q2 = two_prod(w1, g)
    r1, r2 = two_prod(w2, g)
    return exact_sum([r2, q2, p2, r1, q1, p1])


def fraction_c(m, g, beta):
    b = Fraction(float(beta))
    return b * Fraction(float(m)) + (1 - b) * Fraction(float(g))


# =============================================================================== emulation

C_VARIANTS = {
    # name: (coefficient variant, fused multiply-add?, float32 "opmath" double rounding?)
    "rn": ("rn", False, False),
    "rn_fma": ("rn", True, False),
    "via32": ("via32", False, False),
    "opmath": ("f32", False, True),
    "opmath_fma": ("f32", True, True),
    "w_from32": ("w32", False, False),  # 1 − β formed in float32, then cast to the format
}


def emulate_c(form, m, g, beta, fmt, variant="rn", mode="rn"):
    """Evaluate c in ``fmt`` the way ``form`` does, every operation rounded (mode) in fmt."""
    cv, fma, via32 = C_VARIANTS[variant]
    a = Arith(fmt, mode, via32=via32)
    if form == "muladd_one_minus_beta":
        cv = "via32" if cv in ("via32", "w32") else "rn"
        bh = coefficient(beta, fmt, cv)
        wh = a.sub(np.ones_like(bh), bh)
    elif cv == "w32":
        bh = coefficient(beta, fmt, "via32")
        wh = round_to(round_to(1.0 - round_to(beta, F32), F32), fmt)
    else:
        bh = coefficient(beta, fmt, cv)
        wh = coefficient(1.0 - beta, fmt, cv)
    if form in ("muladd", "muladd_one_minus_beta"):
        if fma:
            return a.fma(bh, m, a.mul(wh, g))
        return a.add(a.mul(bh, m), a.mul(wh, g))
    if form == "lerp":  # torch.lerp: weight < 0.5 ? m + w·(g − m) : g − (g − m)·(1 − w)
        d = a.sub(g, m)
        if fma:
            lo_w = a.fma(wh, d, m)
            hi_w = a.fma(-d, 1.0 - wh, g)
        else:
            lo_w = a.add(m, a.mul(wh, d))
            hi_w = a.sub(g, a.mul(d, 1.0 - wh))  # 1 − ŵ is exact for ŵ >= 1/2
        return np.where(wh < 0.5, lo_w, hi_w)
    if form == "diff":
        d = a.sub(m, g)
        if fma:
            return a.fma(d, bh, g)
        return a.add(a.mul(d, bh), g)
    raise ValueError(form)


def check_bound(err, bound, key, min_ratio=None, fmt=None):
    """Zero violations; record max err/bound (overall, and where the underflow terms are < 1% of
    the bound, so that tightness is not just the ε terms); optionally assert tightness."""
    assert np.all(np.isfinite(bound))
    viol = err > bound * SLACK
    nv = np.count_nonzero(viol)
    assert nv == 0, f"{key}: {nv} violations, e.g. index {np.argmax(viol)}"
    ratio = err / bound
    worst = float(np.max(ratio))
    record(key, worst)
    if min_ratio is not None:
        assert worst >= min_ratio, f"{key}: bound vacuous? max ratio {worst}"
    if fmt is not None:
        eps = bounds._eff(get_format(fmt))[1]
        normal = 8 * eps < 0.01 * bound
        wn = float(np.max(ratio[normal]))
        record(key + "/normal-range", wn)
        if min_ratio is not None:
            assert wn >= min_ratio, f"{key}: bound vacuous in the normal range? {wn}"
    return worst


def verify_worst_with_fractions(err, bound, exact_fn, observed, idx_count=20):
    """Re-check the worst samples (largest err/bound) exactly with rationals."""
    order = np.argsort(err / bound)[-idx_count:]
    for i in order:
        c = exact_fn(i)
        e = abs(Fraction(float(observed[i])) - c)
        assert e <= Fraction(float(bound[i]))
        # the double-double err agrees with the exact one to far better than the bound's slack
        assert abs(Fraction(float(err[i])) - e) <= Fraction(float(bound[i])) * Fraction(1, 2**40)


# =============================================================================== c bound

FORM_NAMES = ("muladd", "muladd_one_minus_beta", "lerp", "diff")
#: Tightness floor. Each bound is a sum of at most 4 first-order terms (coefficient error, product
#: rounding(s), final rounding, underflow) each of which a single adversarial sample can nearly
#: attain; so the worst case over 1M adversarial samples must reach at least a quarter of it unless
#: the bound over-counts a term. We assert the worst case reaches 1/4.
TIGHT = 0.25


@pytest.mark.slow
@pytest.mark.parametrize("fmt", LOW)
@pytest.mark.parametrize("form", FORM_NAMES)
def test_c_bound_holds_and_is_tight(form, fmt):
    rng = np.random.default_rng(seed(form, fmt))
    m, g, beta = c_samples(rng, N, fmt)
    variants = ["rn", "rn_fma"] if fmt == "float32" else list(C_VARIANTS)
    chunks = np.array_split(np.arange(N), len(variants))
    chat = np.empty(N)
    for v, idx in zip(variants, chunks, strict=True):
        chat[idx] = emulate_c(form, m[idx], g[idx], beta[idx], fmt, v)
    hi, lo = exact_c(m, g, beta)
    err = dd_abs_diff(chat, hi, lo)
    b = c_error_bound(m, g, beta, form=form, compute=fmt)
    check_bound(err, b, f"c/{form}/{fmt}", TIGHT, fmt)
    verify_worst_with_fractions(err, b, lambda i: fraction_c(m[i], g[i], beta[i]), chat)
    # the universal bound covers the form too
    bu = c_error_bound(m, g, beta, form="universal", compute=fmt)
    assert np.all(bu >= b)
    # sign verdicts: no failure, some ambiguous flips on these near-cancelling samples
    codes = classify_sign(chat, hi, b)
    summary = summarize_signs(codes, chat, hi)
    assert summary["failure"] == 0
    record(f"c/{form}/{fmt}/flips", summary["ambiguous"])


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["bfloat16", "float16"])
@pytest.mark.parametrize("form", FORM_NAMES)
def test_c_bound_fused_kernel(form, storage):
    """Inputs in bf16/fp16 storage, arithmetic in fp32 (a fused kernel): the fp32 bound holds."""
    rng = np.random.default_rng(seed(form, storage, 1))
    m, g, beta = c_samples(rng, N // 2, storage)
    chat = emulate_c(form, m, g, beta, "float32")
    hi, lo = exact_c(m, g, beta)
    err = dd_abs_diff(chat, hi, lo)
    b = c_error_bound(m, g, beta, form=form, compute="float32")
    check_bound(err, b, f"c-fused/{form}/{storage}", TIGHT, "float32")
    verify_worst_with_fractions(err, b, lambda i: fraction_c(m[i], g[i], beta[i]), chat)


@pytest.mark.slow
def test_c_bound_can_fail():
    """Wrong emulations violate: truncation instead of rounding, a form evaluated in bf16 while
    fp32 is declared, and the declared fp32 bound against a bf16-represented β."""
    rng = np.random.default_rng(11)
    n = 200_000
    for form in FORM_NAMES:
        m, g, beta = c_samples(rng, n, "bfloat16")
        hi, lo = exact_c(m, g, beta)
        b = c_error_bound(m, g, beta, form=form, compute="bfloat16")
        trunc = emulate_c(form, m, g, beta, "bfloat16", mode="rz")
        assert np.count_nonzero(dd_abs_diff(trunc, hi, lo) > b) > 0, form
        b32 = c_error_bound(m, g, beta, form=form, compute="float32")
        low = emulate_c(form, m, g, beta, "bfloat16")
        assert np.count_nonzero(dd_abs_diff(low, hi, lo) > b32) > n // 10, form


def test_rounding_direction_bias_is_visible():
    """Round-to-nearest flips are balanced; rounding toward −inf flips one way (flip_bias_z)."""
    rng = np.random.default_rng(5)
    m, g, beta = c_samples(rng, 200_000, "bfloat16")
    hi, _ = exact_c(m, g, beta)
    b = c_error_bound(m, g, beta, form="diff", compute="bfloat16")
    z = {}
    for mode in ("rn", "rd"):
        chat = emulate_c("diff", m, g, beta, "bfloat16", mode=mode)
        s = summarize_signs(classify_sign(chat, hi, b), chat, hi)
        z[mode] = s["flip_bias_z"]
    assert abs(z["rn"]) < 5 < abs(z["rd"])


def test_c_bound_float64():
    """The float64 bound (u = 2**-53, float64 evaluation rounded upward) holds for NumPy's own
    float64 arithmetic, where the bound's own rounding matters most."""
    rng = np.random.default_rng(64)
    n = 200_000
    f = FORMATS["float64"]
    m = rng.standard_normal(n) * np.exp2(rng.integers(-400, 400, n))
    beta = rng.choice(BETAS, n)
    with np.errstate(divide="ignore"):
        g = -beta / (1 - beta) * m * (1 + rng.integers(-4, 5, n) * 2.0**-52)
    g[::7] = rng.standard_normal(g[::7].size)
    hi, lo = exact_c(m, g, beta)
    w = 1.0 - beta
    forms = {
        "muladd": beta * m + w * g,
        "lerp": np.where(w < 0.5, m + w * (g - m), g - (g - m) * (1.0 - w)),
        "diff": (m - g) * beta + g,
    }
    for form, chat in forms.items():
        err = dd_abs_diff(chat, hi, lo)
        b = c_error_bound(m, g, beta, form=form, compute=f)
        check_bound(err, b, f"c/{form}/float64", TIGHT)
        verify_worst_with_fractions(err, b, lambda i: fraction_c(m[i], g[i], beta[i]), chat)


# =============================================================================== momentum


@pytest.mark.slow
@pytest.mark.parametrize(
    ("compute", "storage"),
    [("float32", "bfloat16"), ("float32", "float16"), ("bfloat16", "bfloat16"),
     ("float16", "float16"), ("float32", "float32")],
)
def test_momentum_bound(compute, storage):
    rng = np.random.default_rng(seed(compute, storage))
    n = N // 2
    m, g, beta = c_samples(rng, n, storage)
    form_of = rng.integers(0, 4, n)
    mhat = np.empty(n)
    b = np.empty(n)
    for k, form in enumerate(FORM_NAMES):
        idx = form_of == k
        c = emulate_c(form, m[idx], g[idx], beta[idx], compute)
        mhat[idx] = round_to(c, storage)
        b[idx] = momentum_update_bound(m[idx], g[idx], beta[idx], form=form, compute=compute,
                                       storage=storage)  # fmt: skip
    hi, lo = exact_c(m, g, beta)
    err = dd_abs_diff(mhat, hi, lo)
    check_bound(err, b, f"momentum/{compute}->{storage}", TIGHT)
    verify_worst_with_fractions(err, b, lambda i: fraction_c(m[i], g[i], beta[i]), mhat)
    if compute != storage:  # a truncating store is caught
        from ._emulate import directed, round_to_odd

        bad = np.empty(n)
        for k, form in enumerate(FORM_NAMES):
            idx = form_of == k
            c = emulate_c(form, m[idx], g[idx], beta[idx], compute)
            bad[idx] = directed(round_to_odd(c, 0.0), get_format(storage), "rz")
        assert np.count_nonzero(dd_abs_diff(bad, hi, lo) > b) > 0


# =============================================================================== parameter update


def param_samples(rng, n, storage):
    f = get_format(storage)
    kind = rng.integers(0, 6, n)
    theta = round_to(rng.standard_normal(n) * 0.02, f)
    k1 = kind == 1
    theta[k1] = log_uniform_values(rng, np.count_nonzero(k1), f, f.emin - f.p + 1, f.emax - 4)
    k2 = kind == 2  # powers of two and neighbours: binade boundaries
    e = rng.integers(-20, 4, np.count_nonzero(k2))
    pow2 = np.ldexp(rng.choice([-1.0, 1.0], e.size), e)
    theta[k2] = ulps_shift(pow2, rng.integers(-2, 3, e.size), f)
    k3 = kind == 3
    theta[k3] = np.copysign(0.0, rng.standard_normal(np.count_nonzero(k3)))
    eta = 10.0 ** rng.uniform(-8, -0.5, n)
    k4 = kind == 4  # η at the lost-step threshold ulp/2 and neighbours
    half = ulp(theta[k4], f) / 2 * rng.choice([0.5, 1.0, 2.0], np.count_nonzero(k4))
    eta[k4] = np.nextafter(half, rng.choice([0.0, np.inf], half.size))
    lam = rng.choice([0.0, 0.01, 0.1, 1.0, -1.0], n)
    r = lam < 0
    lam[r] = 10.0 ** rng.uniform(-4, 1, np.count_nonzero(r))
    s = rng.choice([-1.0, 0.0, 1.0], n)
    return theta, eta, lam, s


def exact_param(theta, eta, lam, s):
    a1, a2 = two_prod(eta, lam)
    p1, p2 = two_prod(a1, theta)
    q1, q2 = two_prod(a2, theta)
    return exact_sum([-q2, -p2, -q1, -eta * s, -p1, theta])


def emulate_param(form, theta, eta, lam, s, compute, storage, rounds, variant):
    """variant bits: 1 = â from fl(η̂·λ̂) (else the float64 η·λ carried in), 2 = f = fl(1 − â)
    (else the float64 1 − η·λ carried in), 4 = decay by subtraction θ − â·θ (else θ·f),
    8 = FMA where possible, 16 = coefficients via float32 (double rounding)."""
    a = Arith(compute)
    cv = "via32" if variant & 16 else "rn"
    eh = coefficient(eta, compute, cv)
    lh = coefficient(lam, compute, cv)
    ahat = a.mul(eh, lh) if variant & 1 else coefficient(eta * lam, compute, cv)
    fhat = a.sub(np.ones_like(ahat), ahat) if variant & 2 else coefficient(1.0 - eta * lam,
                                                                           compute, cv)  # fmt: skip
    step = eh * s  # exact
    t = a.sub(theta, a.mul(ahat, theta)) if variant & 4 else a.mul(theta, fhat)
    if rounds == 2:
        t1 = round_to(t, storage)
        return round_to(a.sub(t1, step), storage)
    if form == "decay_first":
        r = a.fma(theta, fhat, -step) if variant & 8 and not variant & 4 else a.sub(t, step)
    elif form == "bracket":
        v = a.fma(lh, theta, s) if variant & 8 else a.add(s, a.mul(lh, theta))
        r = a.fma(-eh, v, theta) if variant & 8 else a.sub(theta, a.mul(eh, v))
    elif form == "separate":
        y = a.sub(theta, step)
        r = a.fma(-ahat, theta, y) if variant & 8 else a.sub(y, a.mul(ahat, theta))
    else:  # pragma: no cover
        raise ValueError(form)
    return round_to(r, storage)


PARAM_CASES = [("float32", "bfloat16"), ("float32", "float16"), ("float32", "float32"),
               ("bfloat16", "bfloat16"), ("float16", "float16")]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("compute", "storage"), PARAM_CASES)
@pytest.mark.parametrize(
    ("form", "rounds"), [("decay_first", 1), ("bracket", 1), ("separate", 1), ("decay_first", 2)]
)
def test_param_update_bound(form, rounds, compute, storage):
    rng = np.random.default_rng(seed(form, rounds, compute, storage))
    n = 250_000
    theta, eta, lam, s = param_samples(rng, n, storage)
    variant = rng.integers(0, 32, n)
    out = np.empty(n)
    for v in range(32):
        idx = variant == v
        out[idx] = emulate_param(form, theta[idx], eta[idx], lam[idx], s[idx], compute, storage,
                                 rounds, v)  # fmt: skip
    hi, lo = exact_param(theta, eta, lam, s)
    err = dd_abs_diff(out, hi, lo)
    b = param_update_bound(theta, eta, lam, s, compute=compute, storage=storage,
                           storage_roundings=rounds, form=form)  # fmt: skip
    check_bound(err, b, f"param/{form}/{rounds}/{compute}->{storage}", TIGHT)

    def exact_fn(i):
        t, e, lm = Fraction(float(theta[i])), Fraction(float(eta[i])), Fraction(float(lam[i]))
        return t - e * (Fraction(float(s[i])) + lm * t)

    verify_worst_with_fractions(err, b, exact_fn, out)
    bu = param_update_bound(theta, eta, lam, s, compute=compute, storage=storage,
                            storage_roundings=rounds)  # fmt: skip
    assert np.all(bu >= b)
    # the bound admits exactly what rounding does: a lost step is inside it
    lost = lost_step(theta, eta, s, storage) & (lam == 0)
    assert np.all(b[lost] >= eta[lost] * (s[lost] != 0))


@pytest.mark.slow
def test_param_update_bound_can_fail():
    rng = np.random.default_rng(12)
    n = 200_000
    theta, eta, lam, s = param_samples(rng, n, "bfloat16")
    hi, lo = exact_param(theta, eta, lam, s)
    b1 = param_update_bound(theta, eta, lam, s, compute="float32", storage="bfloat16")
    # two storage roundings where one is declared
    two = emulate_param("decay_first", theta, eta, lam, s, "float32", "bfloat16", 2, 0)
    assert np.count_nonzero(dd_abs_diff(two, hi, lo) > b1) > 0
    # truncating store
    from ._emulate import directed, round_to_odd

    r = Arith("float32").sub(Arith("float32").mul(theta, coefficient(1 - eta * lam, F32)), eta * s)
    bad = directed(round_to_odd(r, 0.0), get_format("bfloat16"), "rz")
    assert np.count_nonzero(dd_abs_diff(bad, hi, lo) > b1) > 0
    # 16-bit arithmetic where float32 is declared (no weight decay, so no decay-rounding slack)
    lam0 = np.zeros(n)
    hi0, lo0 = exact_param(theta, eta, lam0, s)
    b0 = param_update_bound(theta, eta, lam0, s, compute="float32", storage="float32")
    low = emulate_param("decay_first", theta, eta, lam0, s, "bfloat16", "bfloat16", 1, 0)
    assert np.count_nonzero(dd_abs_diff(low, hi0, lo0) > b0) > n // 10


# =============================================================================== accumulation


def accumulation_samples(rng, n, k, fmt):
    f = get_format(fmt)
    beta = rng.choice(BETAS[BETAS < 0.9999], n)
    m0 = log_uniform_values(rng, n, f, f.emin - f.p + 1, f.emax - 20)
    small = rng.random(n) < 0.15
    m0[small] = log_uniform_values(rng, np.count_nonzero(small), f, f.emin - f.p + 1, f.emin + 3)
    target = -beta / (1 - beta) * m0  # mean(g) that cancels β·m0
    g = np.empty((k, n))
    for i in range(k - 1):
        g[i] = round_to(target * (1 + rng.standard_normal(n)), f)
    g[k - 1] = ulps_shift(round_to(k * target - g[: k - 1].sum(axis=0), f),
                          rng.integers(-3, 4, n), f)  # fmt: skip
    rnd = rng.random(n) < 0.1
    g[:, rnd] = log_uniform_values(rng, (k, np.count_nonzero(rnd)), f, f.emin - f.p + 1,
                                   f.emax - 20)  # fmt: skip
    return m0, g, beta


def exact_accumulated(m0, g, beta, k):
    a1, a2 = two_prod(beta, m0)
    terms = []
    for x in (a1, a2):
        terms += list(two_prod(np.float64(k), x))
    w1, w2 = two_sum(np.ones_like(beta), -beta)
    for gi in g:
        terms += list(two_prod(w1, gi)) + list(two_prod(w2, gi))
    terms.sort(key=lambda t: float(np.max(np.abs(t))))
    hi, lo = exact_sum(terms)
    return dd_div_int(hi, lo, k)


def emulate_accumulated(order, m0, g, beta, k, fmt, variant=0, mode="rn"):
    a = Arith(fmt, mode)
    cv = "via32" if variant & 1 else "rn"
    bh = coefficient(beta, fmt, cv)
    if order == "tiger":
        ah = coefficient((1.0 - beta) / k, fmt, cv)
        m = a.add(a.mul(bh, m0), a.mul(ah, g[0]))
        for i in range(1, k):
            m = a.add(m, a.mul(ah, g[i]))
        return m
    if order == "direct":
        s = g[0]
        for i in range(1, k):
            s = a.add(s, g[i])
        mean = a.div(s, k)
    else:
        mean = np.zeros_like(m0)
        for i in range(k):
            mean = a.add(mean, a.div(a.sub(g[i], mean), i + 1))
    wh = coefficient(1.0 - beta, fmt, cv)
    return a.add(a.mul(bh, m0), a.mul(wh, mean))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", LOW)
@pytest.mark.parametrize("order", ["direct", "tiger", "running_mean"])
def test_accumulation_bound(order, fmt):
    ratios = []
    for k in (1, 2, 3, 4, 8):
        rng = np.random.default_rng(seed(order, fmt, k))
        n = 100_000
        m0, g, beta = accumulation_samples(rng, n, k, fmt)
        variant = rng.integers(0, 2, n) if fmt != "float32" else np.zeros(n, int)
        out = np.empty(n)
        for v in (0, 1):
            idx = variant == v
            out[idx] = emulate_accumulated(order, m0[idx], g[:, idx], beta[idx], k, fmt, v)
        hi, lo = exact_accumulated(m0, g, beta, k)
        err = dd_abs_diff(out, hi, lo)
        b = accumulation_bound(m0, g, beta, k, compute=fmt, order=order)
        ratios.append(check_bound(err, b, f"accum/{order}/{fmt}/k={k}"))

        def exact_fn(i, m0=m0, g=g, beta=beta, k=k):
            bb = Fraction(float(beta[i]))
            mean = sum(Fraction(float(x)) for x in g[:, i]) / k
            return bb * Fraction(float(m0[i])) + (1 - bb) * mean

        verify_worst_with_fractions(err, b, exact_fn, out)
        assert np.all(accumulation_bound(m0, g, beta, k, compute=fmt) >= b)
        # the a-priori NUMERICS form γ_{k+3}(β|m0| + (1−β)/k Σ|g|) + ρ-terms + underflow is
        # never smaller than the running-error bound (it is implied by it)
        if order == "tiger":
            f = get_format(fmt)
            u, eps = bounds._eff(f)
            gk = (k + 3) * u / (1 - (k + 3) * u)
            apriori = gk * (beta * np.abs(m0) + (1 - beta) / k * np.abs(g).sum(0))
            apriori += coefficient_error(beta, f) * np.abs(m0)
            apriori += coefficient_error((1 - beta) / k, f) * np.abs(g).sum(0) * (1 + 2**-50)
            apriori += (k + 1) * 2 * eps
            assert np.all(b <= apriori * (1 + 2**-30))
    assert max(ratios) >= TIGHT
    if fmt == "bfloat16":  # truncation is caught
        rng = np.random.default_rng(99)
        m0, g, beta = accumulation_samples(rng, 100_000, 4, fmt)
        hi, lo = exact_accumulated(m0, g, beta, 4)
        b = accumulation_bound(m0, g, beta, 4, compute=fmt, order=order)
        bad = emulate_accumulated(order, m0, g, beta, 4, fmt, mode="rz")
        assert np.count_nonzero(dd_abs_diff(bad, hi, lo) > b) > 0


# =============================================================================== small API


def test_gamma_and_unit_roundoff():
    assert unit_roundoff("float16") == 2.0**-11
    assert gamma(0, "float32") == 0.0
    g3 = gamma(3, "bfloat16")
    assert Fraction(g3) >= Fraction(3, 256) / (1 - Fraction(3, 256))
    with pytest.raises(ValueError, match="n·u"):
        gamma(256, "bfloat16")
    with pytest.raises(ValueError, match="n must"):
        gamma(-1, "float32")


def test_argument_validation():
    one = np.array([1.0])
    with pytest.raises(ValueError, match="form"):
        c_error_bound(one, one, 0.9, form="fma")
    with pytest.raises(ValueError, match="beta"):
        c_error_bound(one, one, 1.0)
    with pytest.raises(ValueError, match="m must hold values"):
        c_error_bound(np.array([0.1]), one, 0.9, compute="bfloat16")
    with pytest.raises(ValueError, match="compute"):
        c_error_bound(one, one, 0.9, compute="float8")
    with pytest.raises(ValueError, match="direction"):
        param_update_bound(one, 1e-3, 0.0, np.array([0.5]))
    with pytest.raises(ValueError, match="storage_roundings"):
        param_update_bound(one, 1e-3, 0.0, one, storage_roundings=3)
    with pytest.raises(ValueError, match="form must be 'decay_first'"):
        param_update_bound(one, 1e-3, 0.0, one, storage_roundings=2, form="bracket")
    with pytest.raises(ValueError, match="eta"):
        param_update_bound(one, -1e-3, 0.0, one)
    with pytest.raises(ValueError, match="theta"):
        param_update_bound(np.array([0.1]), 1e-3, 0.0, one, storage="bfloat16")
    with pytest.raises(ValueError, match="grads must have shape"):
        accumulation_bound(one, np.ones((2, 1)), 0.9, 3)
    with pytest.raises(ValueError, match="order"):
        accumulation_bound(one, np.ones((1, 1)), 0.9, 1, order="welford")
    with pytest.raises(ValueError, match="k must"):
        accumulation_bound(one, np.ones((1, 1)), 0.9, 0)


def test_bound_rounds_upward_and_covers_gamma_form():
    """The muladd bound is below the NUMERICS a-priori form γ3·S + 2ε + (coefficient terms) and
    the universal bound is the maximum of the forms."""
    rng = np.random.default_rng(1)
    for fmt in LOW:
        f = get_format(fmt)
        m, g, beta = c_samples(rng, 10_000, fmt)
        b = c_error_bound(m, g, beta, form="muladd", compute=fmt)
        u, eps = bounds._eff(f)
        s = beta * np.abs(m) + (1 - beta) * np.abs(g)
        rho = coefficient_error(beta, f) * np.abs(m) + weight_error(beta, f) * np.abs(g)
        g3 = 3 * u / (1 - 3 * u)
        assert np.all(b <= (g3 * (s + rho) + (1 + u) * rho + 2 * (1 + u) * eps) * (1 + 2**-30))
        forms = [c_error_bound(m, g, beta, form=x, compute=fmt) for x in FORM_NAMES]
        assert np.array_equal(c_error_bound(m, g, beta, compute=fmt), np.maximum.reduce(forms))


def test_classify_sign_and_value():
    obs = np.array([1.0, -1.0, 0.0, -0.0, np.nan, np.nan, 1.0, -2.0])
    exact = np.array([3.0, 1e-9, 0.0, 1e-9, np.nan, 1.0, np.nan, 5.0])
    codes = classify_sign(obs, exact, 1e-6)
    assert codes.dtype == np.int8
    assert codes.tolist() == [SIGN_AGREE, SIGN_AMBIGUOUS, SIGN_AGREE, SIGN_AMBIGUOUS,
                              SIGN_AGREE, SIGN_FAILURE, SIGN_FAILURE, SIGN_FAILURE]  # fmt: skip
    s = summarize_signs(codes, obs, exact)
    assert (s["agree"], s["ambiguous"], s["failure"], s["total"]) == (3, 2, 3, 8)
    assert (s["flips_up"], s["flips_down"]) == (0, 2)
    v = classify_value([1.0, 1.0 + 2**-30, 1.5, np.inf, -0.0], [1.0, 1.0, 1.0, 1.0, 0.0], 2**-30)
    assert v.tolist() == [VALUE_EXACT, VALUE_WITHIN, VALUE_FAILURE, VALUE_FAILURE, VALUE_EXACT]
    # the exact difference decides, not its float64 rounding: 1 − (−2**-60) rounds to 1.0
    assert classify_value(1.0, -(2.0**-60), 1.0)[()] == VALUE_FAILURE
    assert classify_value(1.0, -(2.0**-60), 1.0 + 2.0**-52)[()] == VALUE_WITHIN
    assert classify_value(1.0, 2.0**-60, 1.0)[()] == VALUE_WITHIN


# =============================================================================== predicates


def _bf16_strategy():
    return (
        st.integers(0, 0xFFFF)
        .map(lambda b: float(np.array([b], np.uint16).view(BF16)[0]))
        .filter(math.isfinite)
    )


def _value_strategy(fmt):
    if fmt == "float16":
        return st.floats(width=16, allow_nan=False, allow_infinity=False)
    if fmt == "float32":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    return _bf16_strategy()


@given(data=st.data())
def test_lost_step_is_exact(data):
    fmt = data.draw(st.sampled_from(LOW), label="format")
    theta = data.draw(_value_strategy(fmt), label="theta")
    d = data.draw(st.sampled_from([-1.0, 0.0, 1.0]), label="direction")
    g = float(ulp(theta, fmt))
    near = [g / 2, g / 4, g, np.nextafter(g / 2, 0), np.nextafter(g / 2, 1), np.nextafter(g / 4, 1)]
    eta = data.draw(
        st.one_of(st.sampled_from(near), st.floats(0, 1e-1), st.floats(0, g * 2)), label="eta"
    )
    got = bool(lost_step(theta, eta, d, fmt))
    want = rn_fraction(Fraction(theta) - Fraction(eta) * Fraction(d), fmt) == theta
    assert got == want


def test_lost_step_numbers():
    f16 = "float16"
    th = round_to(np.linspace(1.0, 2.0, 1025)[:-1], f16)  # every fp16 value in [1, 2)
    assert np.all(lost_step(th, 4.88e-4, 1.0, f16)[1:])
    assert np.all(lost_step(th, 4.88e-4, -1.0, f16))
    assert not np.any(lost_step(th, 4.9e-4, 1.0, f16))
    # exactly 2**-11 = ulp/2: lost only where the significand is even (ties to even)
    tie = lost_step(th, 2.0**-11, -1.0, f16)
    assert np.array_equal(tie, np.arange(th.size) % 2 == 0)
    # downward from exactly 1.0 the gap below is half as large
    assert lost_step(1.0, 2.0**-12, 1.0, f16) and not lost_step(1.0, 2.0**-12 * 1.001, 1.0, f16)
    assert lost_step(np.inf, 1.0, 1.0, f16) and not lost_step(np.nan, 1.0, 1.0, f16)


@given(data=st.data())
def test_decay_noop_is_exact(data):
    fmt = data.draw(st.sampled_from(LOW), label="format")
    p = FORMATS[fmt].p
    eta = data.draw(st.floats(2.0**-40, 1.0), label="eta")
    thr = 2.0 ** -(p + 1) / eta
    lam = data.draw(
        st.one_of(
            st.floats(0, 10.0),
            st.sampled_from([thr, np.nextafter(thr, 0), np.nextafter(thr, np.inf)]),
        ),
        label="weight_decay",
    )
    got = bool(decay_noop(eta, lam, fmt))
    want = rn_fraction(1 - Fraction(eta) * Fraction(lam), fmt) == 1.0
    assert got == want


def test_decay_noop_numbers():
    assert decay_noop(1e-4, 0.1, "bfloat16")  # η·λ = 1e-5 < 2**-9
    assert decay_noop(2.0**-9, 1.0, "bfloat16")  # the tie goes to 1
    assert not decay_noop(2.0**-9, 1.0 + 2.0**-52, "bfloat16")
    assert not decay_noop(1e-4, 0.1, "float32")
    assert decay_noop(0.0, 5.0, "float16")
    assert decay_noop(1e300, 1e-310, "bfloat16") == (
        rn_fraction(1 - Fraction(1e300) * Fraction(1e-310), "bfloat16") == 1.0
    )


@given(data=st.data())
def test_ema_underflow_is_exact(data):
    fmt = data.draw(st.sampled_from(LOW), label="format")
    g = data.draw(_value_strategy(fmt), label="g")
    beta = data.draw(
        st.one_of(st.floats(0, 1, exclude_max=True), st.sampled_from([0.99, 0.999, 0.5, 0.0])),
        label="beta",
    )
    w = rn_fraction(Fraction(1.0 - beta), fmt)
    want = rn_fraction(Fraction(w) * Fraction(g), fmt) == 0.0
    assert bool(ema_underflow(g, beta, fmt)) == want


def test_ema_underflow_numbers():
    g = round_to(1e-6, "float16")[()]
    assert ema_underflow(g, 0.99, "float16")
    # m stays exactly 0 through 1000 steps of the fp16 EMA (muladd form, per-op fp16)
    a = Arith("float16")
    m = np.zeros(1)
    bh, wh = round_to(0.99, "float16"), round_to(1 - 0.99, "float16")
    for _ in range(1000):
        m = a.add(a.mul(bh, m), a.mul(wh, np.array([g])))
    assert m[0] == 0.0
    assert not ema_underflow(g, 0.99, "bfloat16")
    assert not ema_underflow(1e-5, 0.99, "float16")


@given(data=st.data())
def test_beta_representation_is_rn(data):
    fmt = data.draw(st.sampled_from(LOW), label="format")
    beta = data.draw(st.floats(0, 1, exclude_max=True), label="beta")
    r = beta_representation(beta, fmt)
    assert float(r.represented) == rn_fraction(Fraction(beta), fmt)
    assert bool(r.frozen) == (float(r.represented) == 1.0)
    # coefficient_error covers RN and the float32 double rounding
    rho = Fraction(float(coefficient_error(beta, fmt)))
    for variant in ("rn", "via32", "f32"):
        assert abs(Fraction(float(coefficient(beta, fmt, variant))) - Fraction(beta)) <= rho
    # weight_error covers 1 − β from float64 (RN, via float32, float32) and formed in float32
    rw = Fraction(float(weight_error(beta, fmt)))
    w = 1 - Fraction(beta)
    w32 = float(round_to(1.0 - float(round_to(beta, F32)), F32))
    cands = [coefficient(1.0 - beta, fmt, v) for v in ("rn", "via32", "f32")]
    cands += [w32, round_to(w32, fmt)] if fmt != "float32" else []
    for c in cands:
        assert abs(Fraction(float(c)) - w) <= rw


def test_beta_representation_numbers():
    r = beta_representation([0.99, 0.999, 0.9, 0.0], "bfloat16")
    assert r.represented.tolist()[:2] == [0.98828125, 1.0]
    assert r.frozen.tolist() == [False, True, False, False]
    assert math.isinf(r.horizon[1]) and abs(r.horizon[0] - 85.333) < 1e-3
    assert abs(r.weight_relative_error[0] - 0.171875) < 1e-12  # 1 − β̂ is 17% off 1 − β
    assert r.relative_error[3] == 0.0
    assert float(beta_representation(0.99, "float16").represented) == 0.990234375
    assert float(beta_representation(0.999, "float16").represented) == 0.9990234375


# ---------------------------------------------------------------- frozen fraction (NUMERICS)


def _normal_cdf(x: float, sigma: float) -> float:
    return 0.5 * math.erfc(-x / (sigma * math.sqrt(2.0)))


def predicted_frozen_fraction(eta: float, sigma: float, fmt: str) -> float:
    """P(lost) for θ = RN_fmt(X), X ~ N(0, σ²), direction ±1 with probability 1/2 each: sum over
    the positive values v of fmt of P(RN(X) = ±v)·(lost(v, +1) + lost(v, −1))/2 (+ the zero)."""
    f = get_format(fmt)
    vals = []
    e = f.emin
    while 2.0**e < 40 * sigma:
        q = 2.0 ** (max(e, f.emin) - f.p + 1)
        start = 0 if e == f.emin else 2 ** (f.p - 1)
        vals.append(np.arange(start, 2**f.p) * q)
        e += 1
    v = np.unique(np.concatenate(vals))  # 0, subnormals, normals below 40σ
    mids = (v[1:] + v[:-1]) / 2
    upper = np.append(mids, np.inf)
    lower = np.insert(mids, 0, -np.inf)
    cdf = np.vectorize(lambda x: _normal_cdf(x, sigma))
    pv = cdf(upper) - cdf(np.maximum(lower, 0.0))  # mass of RN(X) = +v (X >= 0 half)
    lost = (lost_step(v, eta, 1.0, f).astype(float) + lost_step(v, eta, -1.0, f)) / 2
    return float(2 * np.sum(pv * lost))


@pytest.mark.parametrize(("eta", "numerics"), [(1e-4, 0.118), (1e-5, 0.845)])
def test_frozen_fraction_bf16(eta, numerics):
    sigma, n = 0.02, 1_000_000
    rng = np.random.default_rng(2024)
    theta = round_to(rng.standard_normal(n) * sigma, "bfloat16")
    d = rng.choice([-1.0, 1.0], n)
    frac = float(np.mean(lost_step(theta, eta, d, "bfloat16")))
    p = predicted_frozen_fraction(eta, sigma, "bfloat16")
    # binomial sampling: |frac − p| <= z·sqrt(p(1 − p)/n), z = 5 (two-sided P ≈ 6e-7)
    assert abs(frac - p) <= 5 * math.sqrt(p * (1 - p) / n)
    assert abs(p - numerics) < 0.0015  # NUMERICS.md quotes 11.8% and 84.5%
    record(f"frozen/bf16/eta={eta}/measured", frac)
    record(f"frozen/bf16/eta={eta}/predicted", p)
