"""Tests of the independent exact oracle :mod:`lionspec.spec.exact`.

Hand-computed examples pin the semantics; hypothesis checks the algebraic identities in exact
arithmetic and the correct rounding of :func:`to_float64`. The oracle is per-element Python with
Fractions, but the arrays here are tiny: every hypothesis test runs the profile's full example
count (200 under ``ci``) and the whole file takes a few seconds.
"""

from __future__ import annotations

import doctest
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lionspec.spec import exact
from lionspec.spec.exact import (
    as_exact,
    exact_sign,
    lion_accumulated_step_exact,
    lion_interp_exact,
    lion_step_exact,
    signum_step_exact,
    tiger_step_exact,
    to_float64,
)

F = Fraction
NAN, INF = math.nan, math.inf


def fr(x: float) -> Fraction:
    return Fraction(float(x))


def mpf_to_float(x: mpmath.mpf) -> float:
    """Correct rounding of an mpf to float64. (``float(mpf)`` double-rounds subnormals.)"""
    sign, man, exp, _ = x._mpf_
    return float((-1) ** sign * Fraction(int(man)) * Fraction(2) ** exp)


def same(a: object, b: object) -> bool:
    """Element-wise identity of two exact arrays (NaN equals NaN; types must agree)."""
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if a.shape != b.shape:
        return False
    for x, y in zip(a.reshape(-1), b.reshape(-1), strict=True):
        if isinstance(x, float) and math.isnan(x):
            if not (isinstance(y, float) and math.isnan(y)):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def test_doctests() -> None:
    result = doctest.testmod(exact, raise_on_error=False)
    assert result.attempted >= 10
    assert result.failed == 0


# ---------------------------------------------------------------------------- hand-computed


def test_lion_exact_cancellation_only_decays() -> None:
    # beta1 = 0.5 and g = -m: c = 0.5*m + 0.5*g = 0 exactly, sign 0, theta only decays.
    theta, g, m = [1.5, -0.25, 3.0], [0.75, -2.0, 0.0], [-0.75, 2.0, 0.0]
    p, m1 = lion_step_exact(theta, g, m, lr=0.1, beta1=0.5, beta2=0.9, weight_decay=0.5)
    decay = 1 - fr(0.1) * fr(0.5)
    assert list(p) == [decay * fr(t) for t in theta]
    assert list(m1) == [
        fr(0.9) * fr(mi) + (1 - fr(0.9)) * fr(gi) for gi, mi in zip(g, m, strict=True)
    ]
    assert list(exact_sign(lion_interp_exact(g, m, beta1=0.5))) == [0.0, 0.0, 0.0]


def test_lion_and_signum_differ_in_update_order() -> None:
    # m = 1, g = -20: Lion's c = 0.9 - 2 = -1.1 < 0 moves theta UP; the SIGNUM-order momentum
    # 0.99 + 0.01*(-20) = 0.79 > 0 moves theta DOWN.
    p_lion, m_lion = lion_step_exact([0.0], [-20.0], [1.0], lr=0.125, beta1=0.9, beta2=0.99)
    p_sig, m_sig = signum_step_exact([0.0], [-20.0], [1.0], lr=0.125, beta=0.99)
    assert p_lion[0] == F(1, 8)
    assert p_sig[0] == -F(1, 8)
    assert m_lion[0] == m_sig[0] == fr(0.99) + (1 - fr(0.99)) * -20
    assert lion_interp_exact([-20.0], [1.0], beta1=0.9)[0] == fr(0.9) - 20 * (1 - fr(0.9))


def test_signum_decay_and_sign_of_new_momentum() -> None:
    p, m = signum_step_exact(
        [2.0, -4.0], [1.0, 3.0], [-3.0, -1.0], lr=0.25, beta=0.5, weight_decay=1.0
    )
    # m' = [-1, 1]; theta' = (1 - 0.25)*theta - 0.25*sign(m')
    assert list(m) == [F(-1), F(1)]
    assert list(p) == [F(3, 4) * 2 + F(1, 4), F(3, 4) * -4 - F(1, 4)]


def test_tiger_accumulation_k3_non_binary_weight() -> None:
    beta = 0.965  # (with beta = 0.9, (1 - beta)/3 happens to be a binary fraction)
    w = (1 - fr(beta)) / 3  # not a binary fraction
    assert w.denominator & (w.denominator - 1) != 0
    theta0, m0 = [0.5, -1.0], [0.25, -0.125]
    gs = [[1.0, 2.0], [-3.0, 0.5], [0.25, -4.0]]
    theta, m = theta0, m0
    for t, g in enumerate(gs):
        theta, m = tiger_step_exact(
            theta, g, m, step=t, lr=0.5, beta=beta, accumulation_steps=3, role="bias"
        )
        if t < 2:
            assert list(theta) == [fr(x) for x in theta0]  # bit-for-bit unchanged
    expected_m = [fr(beta) * fr(m0[i]) + w * sum(fr(g[i]) for g in gs) for i in range(2)]
    assert list(m) == expected_m
    # m'[0] = 0.24125 - 1.75*0.035/3 > 0, m'[1] = -0.120625 - 1.5*0.035/3 < 0; eta = lr/2
    signs = [(x > 0) - (x < 0) for x in expected_m]
    assert signs == [1, -1]
    assert list(theta) == [fr(theta0[i]) - F(1, 4) * signs[i] for i in range(2)]


def test_tiger_nan_on_non_update_micro_step_shrinks_and_keeps_momentum() -> None:
    theta, m = tiger_step_exact(
        [2.0, -4.0, 0.0],
        [1.0, NAN, 1.0],
        [0.5, 0.25, -1.0],
        step=4,
        lr=0.1,
        accumulation_steps=3,
        role="weight",
        shrink_ratio=0.5,
    )
    assert list(theta) == [F(1), F(-2), F(0)]
    assert list(m) == [F(1, 2), F(1, 4), F(-1)]
    # also on an update micro-step, and +-inf is not caught
    theta, m = tiger_step_exact([2.0], [INF], [0.0], step=0, lr=0.5, beta=0.5, role="bias")
    assert m[0] == INF and theta[0] == F(2) - F(1, 4)


def test_tiger_scale_role_shrinks_toward_one() -> None:
    theta, m = tiger_step_exact(
        [3.0, 0.0, INF], [NAN, 0.0, 0.0], [1.0, 2.0, 3.0], step=0, lr=0.1, role="scale"
    )
    s = fr(0.99)
    assert list(theta) == [(3 - 1) * s + 1, (0 - 1) * s + 1, INF]
    assert list(m) == [F(1), F(2), F(3)]
    theta_b, _ = tiger_step_exact([3.0], [NAN], [1.0], step=0, lr=0.1, role="bias")
    assert theta_b[0] == 3 * s


def test_tiger_embedding_rms_per_row_and_weight_rms_whole_tensor() -> None:
    theta = [[1.0, 7.0], [3.0, -3.0], [0.0, 0.0]]  # row RMS 5, 3, 0 (rational)
    g = [[1.0, -1.0], [1.0, 1.0], [1.0, -1.0]]
    m = np.zeros((3, 2))
    lr, beta, wd = 0.5, 0.5, 0.25
    p, _ = tiger_step_exact(
        theta, g, m, step=0, lr=lr, beta=beta, weight_decay=wd, role="embedding"
    )
    rms = [F(5), F(3), F(0)]
    for r in range(3):
        for c in range(2):
            th, s = fr(theta[r][c]), F(1 if g[r][c] > 0 else -1)
            eta = fr(lr) * rms[r]
            assert p[r, c] == (1 - eta * fr(wd)) * th - eta * s
    assert all(isinstance(x, Fraction) for x in p.reshape(-1))
    assert list(p[2]) == [F(0), F(0)]  # RMS 0: eta 0, the zero row does not move
    # weight role: one RMS over the whole tensor, sqrt(68/6) irrational -> mpf elements
    pw, _ = tiger_step_exact(theta, g, m, step=0, lr=lr, beta=beta, weight_decay=wd, role="weight")
    assert isinstance(pw[0, 0], mpmath.mpf)
    with mpmath.workprec(2000):
        rms_w = mpmath.sqrt(mpmath.mpf(68) / 6)
        for r in range(3):
            for c in range(2):
                th = mpmath.mpf(theta[r][c])
                ref = th - mpmath.mpf(lr) * rms_w * (
                    (1 if g[r][c] > 0 else -1) + mpmath.mpf(wd) * th
                )
                assert to_float64([pw[r, c]])[0] == mpf_to_float(ref)
    # 1-D embedding is one row, same as weight; 0-d embedding has RMS |theta|
    p1, _ = tiger_step_exact(
        [3.0, 4.0], [1.0, 1.0], [0.0, 0.0], step=0, lr=0.5, role="embedding", weight_decay=0.0
    )
    p2, _ = tiger_step_exact(
        [3.0, 4.0], [1.0, 1.0], [0.0, 0.0], step=0, lr=0.5, role="weight", weight_decay=0.0
    )
    assert same(p1, p2)
    p0, _ = tiger_step_exact(
        np.float64(-2.0), 1.0, 0.0, step=0, lr=0.25, role="embedding", weight_decay=0.0
    )
    assert p0.shape == () and p0[()] == -2 - F(1, 4) * 2


def test_tiger_zero_lr_and_zero_rms_keep_theta() -> None:
    p, m = tiger_step_exact([0.0, -0.0], [1.0, -1.0], [0.0, 0.0], step=0, lr=0.1)
    assert list(p) == [F(0), F(0)]
    p, m = tiger_step_exact([1.0, 2.0], [1.0, 1.0], [INF, NAN], step=0, lr=0.0)
    assert list(p) == [F(1), F(2)]  # lr = 0: eta = 0 even though sign(m') is NaN
    assert m[0] == INF and math.isnan(m[1])


def test_tiger_infinite_param_gives_infinite_eta() -> None:
    # RMS = inf, eta = inf, lambda > 0: decay coefficient 1 - inf = -inf
    p, _ = tiger_step_exact(
        [INF, -2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], step=0, lr=0.1, weight_decay=0.01
    )
    assert p[0] == -INF  # (-inf)*inf - inf*1
    assert math.isnan(p[1])  # (-inf)*(-2) = +inf, - inf*1 = -inf: inf - inf
    assert math.isnan(p[2])  # (-inf)*0 = NaN (a zero value times an infinite coefficient)
    # lambda = 0: no decay term even with eta = inf; sign 0 times eta = inf is NaN
    p, _ = tiger_step_exact(
        [INF, -2.0, 5.0], [-1.0, -1.0, 0.0], [0.0, 0.0, 0.0], step=0, lr=0.1, weight_decay=0.0
    )
    assert p[0] == INF and p[1] == INF and math.isnan(p[2])  # inf + inf; -2 + inf; 5 - inf*0
    p, _ = tiger_step_exact([INF], [1.0], [0.0], step=0, lr=0.1, weight_decay=0.0)
    assert math.isnan(p[0])  # inf - inf*1


def test_lion_nan_is_elementwise_and_zero_coefficients_are_absent() -> None:
    p, m = lion_step_exact(
        [1.0, 2.0, 3.0], [0.5, NAN, -0.5], [0.0, 0.0, 0.0], lr=0.5, beta1=0.5, beta2=0.5
    )
    assert p[0] == F(1, 2) and math.isnan(p[1]) and p[2] == F(7, 2)
    assert m[0] == F(1, 4) and math.isnan(m[1]) and m[2] == F(-1, 4)
    # lr = 0: theta unchanged even with NaN / inf gradients
    p, m = lion_step_exact([1.0, 2.0], [NAN, INF], [0.0, 0.0], lr=0.0, weight_decay=0.1)
    assert list(p) == [F(1), F(2)] and math.isnan(m[0]) and m[1] == INF
    # beta1 = 0: c = g even where m is infinite or NaN
    c = lion_interp_exact([2.0, -3.0], [INF, NAN], beta1=0.0)
    assert list(c) == [F(2), F(-3)]
    # weight_decay = 0: theta = inf stays inf; lr*wd = 1: the theta term is absent
    p, _ = lion_step_exact([INF, -INF], [1.0, 1.0], [0.0, 0.0], lr=0.5)
    assert list(p) == [INF, -INF]
    p, _ = lion_step_exact([NAN, INF], [1.0, -1.0], [0.0, 0.0], lr=0.5, weight_decay=2.0)
    assert list(p) == [F(-1, 2), F(1, 2)]
    # lr*wd > 1 flips infinity; inf + (-inf) in c gives NaN
    p, m = lion_step_exact([INF, 1.0], [1.0, -INF], [0.0, INF], lr=1.0, weight_decay=3.0)
    assert p[0] == -INF and math.isnan(p[1]) and math.isnan(m[1])


def test_exact_sign_keeps_sign_of_values_that_round_to_zero() -> None:
    tiny = math.ldexp(1.0, -1074)
    _, m = lion_step_exact([0.0, 0.0], [tiny, -tiny], [0.0, 0.0], lr=0.1, beta2=0.99)
    assert list(to_float64(m)) == [0.0, 0.0]  # 0.01 * 2^-1074 rounds to 0
    assert list(exact_sign(m)) == [1.0, -1.0]
    assert m[0] == (1 - fr(0.99)) * F(1, 2**1074)
    # SIGNUM: the tiny momentum still decides the step
    p, _ = signum_step_exact([0.0], [-tiny], [0.0], lr=0.5)
    assert p[0] == F(1, 2)


def test_to_float64_boundaries() -> None:
    top = F(2) ** 1024
    max64 = top - F(2) ** 971
    mid = top - F(2) ** 970
    vals = [
        max64,
        mid - F(1, 2**2000),
        mid,
        -mid,
        top * 10**10,
        F(1, 2**1075),
        F(3, 2**1076),
        F(1, 2**1075) + F(1, 2**3000),
        F(-5, 2**1076),
        F(1, 3),
        F(0),
        float("nan"),
        -INF,
    ]
    out = to_float64(vals)
    assert out[0] == out[1] == np.finfo(np.float64).max
    assert out[2] == INF and out[3] == -INF and out[4] == INF
    assert out[5] == 0.0 and out[6] == math.ldexp(1, -1074) and out[7] == math.ldexp(1, -1074)
    assert out[8] == -math.ldexp(1, -1074)  # -1.25 quanta -> -1 quantum
    assert out[9] == 1 / 3 and out[10] == 0.0 and math.isnan(out[11]) and out[12] == -INF
    assert to_float64(mpmath.mpf(2) ** 2000).item() == INF


@given(st.data())
def test_to_float64_is_correct_rounding(data: st.DataObject) -> None:
    num = data.draw(st.integers(-(2**300), 2**300), label="numerator")
    den = data.draw(st.integers(1, 2**300), label="denominator")
    shift = data.draw(st.integers(-1300, 1300), label="binary exponent")
    x = F(num, den) * F(2) ** shift
    try:
        ref = float(x)
    except OverflowError:
        ref = INF if x > 0 else -INF
    assert to_float64([x])[0] == ref
    f = data.draw(st.floats(allow_nan=False), label="float64")
    assert to_float64(as_exact([f]))[0] == f or f == 0.0


# ------------------------------------------------------------------------------- identities


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=True)
anyfloat = st.floats(allow_nan=True, allow_infinity=True)
betas = st.sampled_from([0.0, 0.5, 0.9, 0.965, 0.99, 0.999999])


@given(st.data())
def test_lion_with_equal_betas_is_signum(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 5), label="n")
    arr = st.lists(anyfloat, min_size=n, max_size=n)
    theta, g, m = (data.draw(arr, label=k) for k in ("param", "grad", "exp_avg"))
    beta = data.draw(betas, label="beta")
    lr = data.draw(st.sampled_from([0.0, 1e-3, 0.5, 3.0]), label="lr")
    wd = data.draw(st.sampled_from([0.0, 0.1, 2.0]), label="weight_decay")
    a = lion_step_exact(theta, g, m, lr=lr, beta1=beta, beta2=beta, weight_decay=wd)
    b = signum_step_exact(theta, g, m, lr=lr, beta=beta, weight_decay=wd)
    assert same(a[0], b[0]) and same(a[1], b[1])


def _tiger_window(theta, grads, m, *, start, k, **kw):
    for j, g in enumerate(grads):
        theta_before = theta
        theta, m = tiger_step_exact(theta, g, m, step=start + j, accumulation_steps=k, **kw)
        if j < k - 1:
            assert same(theta, as_exact(theta_before))
    return theta, m


@given(st.data())
def test_tiger_k_micro_batches_equal_k1_on_mean_gradient(data: st.DataObject) -> None:
    k = data.draw(st.integers(1, 4), label="k")
    shape = data.draw(st.sampled_from([(1,), (3,), (2, 2)]), label="shape")
    n = math.prod(shape)
    arr = st.lists(finite, min_size=n, max_size=n).map(lambda v: np.array(v).reshape(shape))
    theta = data.draw(arr, label="param")
    m0 = data.draw(arr, label="exp_avg")
    grads = [data.draw(arr, label=f"grad{j}") for j in range(k)]
    kw = {
        "lr": data.draw(st.sampled_from([0.0, 1e-3, 0.25]), label="lr"),
        "beta": data.draw(betas, label="beta"),
        "weight_decay": data.draw(st.sampled_from([0.0, 0.01, 0.5]), label="weight_decay"),
        "role": data.draw(st.sampled_from(["weight", "embedding", "bias", "scale"]), label="role"),
    }
    start = k * data.draw(st.integers(0, 5), label="window")
    pa, ma = _tiger_window(theta, grads, m0, start=start, k=k, **kw)
    mean = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        mean[idx] = sum((F(float(g[idx])) for g in grads), F(0)) / k
    pb, mb = tiger_step_exact(theta, mean, m0, step=0, accumulation_steps=1, **kw)
    assert same(ma, mb)
    assert same(pa, pb)


@given(st.data())
def test_lion_accumulated_is_lion_on_exact_mean(data: st.DataObject) -> None:
    k = data.draw(st.integers(1, 4), label="k")
    arr = st.lists(finite, min_size=3, max_size=3)
    theta, m = data.draw(arr, label="param"), data.draw(arr, label="exp_avg")
    grads = [data.draw(arr, label=f"grad{j}") for j in range(k)]
    mean = np.array([sum((F(g[i]) for g in grads), F(0)) / k for i in range(3)], dtype=object)
    a = lion_accumulated_step_exact(theta, grads, m, lr=0.1, weight_decay=0.1)
    b = lion_step_exact(theta, mean, m, lr=0.1, weight_decay=0.1)
    assert same(a[0], b[0]) and same(a[1], b[1])


def test_lion_accumulated_non_finite_and_errors() -> None:
    p, m = lion_accumulated_step_exact([1.0, 1.0], [[INF, NAN], [-INF, 0.0]], [0.0, 0.0], lr=0.5)
    assert math.isnan(p[0]) and math.isnan(p[1]) and math.isnan(m[0])
    with pytest.raises(ValueError, match="grads"):
        lion_accumulated_step_exact([1.0], [], [0.0], lr=0.1)
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        lion_accumulated_step_exact([1.0], [[1.0], [1.0, 2.0]], [0.0], lr=0.1)


@given(st.data())
def test_lion_matches_naive_float64_where_signs_agree(data: st.DataObject) -> None:
    """Sanity check against an inline NumPy evaluation (not the float64 oracle)."""
    n = data.draw(st.integers(1, 6), label="n")
    arr = st.lists(st.floats(-100, 100), min_size=n, max_size=n).map(np.array)
    theta, g, m = (data.draw(arr, label=k) for k in ("param", "grad", "exp_avg"))
    lr, b1, b2, wd = 1e-3, 0.9, 0.99, 0.1
    p, m1 = lion_step_exact(theta, g, m, lr=lr, beta1=b1, beta2=b2, weight_decay=wd)
    c = b1 * m + (1 - b1) * g
    direction = exact_sign(lion_interp_exact(g, m, beta1=b1))
    agree = np.sign(c) == direction
    naive_p = theta * (1 - lr * wd) - lr * np.sign(c)
    naive_m = b2 * m + (1 - b2) * g
    tol_p = 4 * np.spacing(np.abs(theta) + lr)
    tol_m = 4 * np.spacing(np.abs(m) + np.abs(g))
    assert np.all(np.abs(to_float64(p) - naive_p)[agree] <= tol_p[agree])
    assert np.all(np.abs(to_float64(m1) - naive_m) <= tol_m)


# ----------------------------------------------------------------------- rounding of mpf values


def test_ziv_loop_agrees_at_tiny_start_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    theta = np.array([0.3, -1.7, 2.5, 0.0, 1e-300, -0.1])
    g = np.array([1.0, -1.0, 0.5, -2.0, 1.0, 0.0])
    m = np.zeros(6)
    ref, _ = tiger_step_exact(theta, g, m, step=0, lr=0.37, weight_decay=0.3)
    monkeypatch.setattr(exact, "_START_PREC", 2)  # forces several precision doublings
    low, _ = tiger_step_exact(theta, g, m, step=0, lr=0.37, weight_decay=0.3)
    assert list(to_float64(low)) == list(to_float64(ref))
    for x, y in zip(low, ref, strict=True):
        if isinstance(x, mpmath.mpf):
            assert exact._grid_cell(exact._raw_to_fraction(x._mpf_)) == exact._grid_cell(
                exact._raw_to_fraction(y._mpf_)
            )


@given(st.data())
def test_tiger_weight_rounding_matches_high_precision_reference(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 4), label="n")
    arr = st.lists(st.floats(-1e3, 1e3).filter(lambda v: v != 0), min_size=n, max_size=n)
    theta, g = data.draw(arr, label="param"), data.draw(arr, label="grad")
    lr = data.draw(st.sampled_from([1e-4, 0.01, 0.3, 7.0]), label="lr")
    wd = data.draw(st.sampled_from([0.0, 0.01, 1.0]), label="weight_decay")
    p, _ = tiger_step_exact(theta, g, np.zeros(n), step=0, lr=lr, weight_decay=wd, beta=0.5)
    with mpmath.workprec(2000):
        rms = mpmath.sqrt(mpmath.fsum(mpmath.mpf(t) ** 2 for t in theta) / n)
        for i in range(n):
            th = mpmath.mpf(theta[i])
            s = 1 if g[i] > 0 else -1
            ref = th - mpmath.mpf(lr) * rms * (s + mpmath.mpf(wd) * th)
            assert to_float64([p[i]])[0] == mpf_to_float(ref)
            # the mpf also rounds correctly to float32 in one step (no double-rounding error)
            value = p[i] if isinstance(p[i], Fraction) else exact._raw_to_fraction(p[i]._mpf_)
            true32 = exact._round_nearest_even(exact._raw_to_fraction(ref._mpf_), 24, -149)
            assert exact._round_nearest_even(value, 24, -149) == true32


# ------------------------------------------------------------------------ inputs and validation


def test_object_array_inputs_carry_exact_state() -> None:
    theta, m = tiger_step_exact([1.0], [0.3], [0.0], step=0, lr=0.1, accumulation_steps=2)
    assert isinstance(m[0], Fraction) and float(m[0]) != m[0]  # not a float64 value
    theta2, m2 = tiger_step_exact(theta, [0.3], m, step=1, lr=0.1, accumulation_steps=2)
    assert m2[0] == 2 * (1 - fr(0.965)) / 2 * fr(0.3)
    assert isinstance(theta2[0], Fraction)  # RMS of [1.0] is 1: rational


def test_empty_and_scalar_shapes() -> None:
    for fn, kw in (
        (lion_step_exact, {"lr": 0.1}),
        (signum_step_exact, {"lr": 0.1}),
        (tiger_step_exact, {"lr": 0.1, "step": 0}),
    ):
        p, m = fn(np.zeros((2, 0)), np.zeros((2, 0)), np.zeros((2, 0)), **kw)
        assert p.shape == m.shape == (2, 0) and p.dtype == object
        p, m = fn(1.0, 1.0, 0.0, **kw)
        assert p.shape == () and isinstance(p[()], Fraction)
    assert to_float64(np.empty((0, 3), dtype=object)).shape == (0, 3)


def test_low_precision_inputs_are_taken_exactly() -> None:
    x16 = np.array([0.1, 65504.0], dtype=np.float16)
    p, _ = signum_step_exact(x16, x16, x16, lr=0.0)
    assert list(p) == [F(float(v)) for v in x16]
    with pytest.raises(ValueError, match="grad"):
        signum_step_exact([1.0], np.array([2**60 + 1], dtype=np.int64), [0.0], lr=0.1)


@pytest.mark.parametrize(
    ("fn", "kwargs", "name"),
    [
        (lion_step_exact, {"lr": -1.0}, "lr"),
        (lion_step_exact, {"lr": float("nan")}, "lr"),
        (lion_step_exact, {"lr": 0.1, "beta1": 1.0}, "beta1"),
        (lion_step_exact, {"lr": 0.1, "beta2": -0.1}, "beta2"),
        (lion_step_exact, {"lr": 0.1, "weight_decay": -1.0}, "weight_decay"),
        (signum_step_exact, {"lr": 0.1, "beta": 1.5}, "beta"),
        (signum_step_exact, {"lr": True}, "lr"),
        (tiger_step_exact, {"lr": 0.1, "step": -1}, "step"),
        (tiger_step_exact, {"lr": 0.1, "step": 0.5}, "step"),
        (tiger_step_exact, {"lr": 0.1, "step": 0, "accumulation_steps": 0}, "accumulation_steps"),
        (tiger_step_exact, {"lr": 0.1, "step": 0, "role": "gamma"}, "role"),
        (tiger_step_exact, {"lr": 0.1, "step": 0, "shrink_ratio": 0.0}, "shrink_ratio"),
        (tiger_step_exact, {"lr": 0.1, "step": 0, "beta": 1.0}, "beta"),
        (tiger_step_exact, {"lr": 0.1, "step": 0, "weight_decay": INF}, "weight_decay"),
    ],
)
def test_validation_names_the_parameter(fn, kwargs, name) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        fn([1.0], [1.0], [0.0], **kwargs)


@pytest.mark.parametrize("fn", [lion_step_exact, signum_step_exact, tiger_step_exact])
def test_shape_mismatch_names_the_array(fn) -> None:
    kw = {"lr": 0.1} if fn is not tiger_step_exact else {"lr": 0.1, "step": 0}
    with pytest.raises(ValueError, match="grad"):
        fn([1.0, 2.0], [1.0], [0.0, 0.0], **kw)
    with pytest.raises(ValueError, match="exp_avg"):
        fn([1.0, 2.0], [1.0, 2.0], [0.0], **kw)
    with pytest.raises(ValueError, match="exp_avg"):
        lion_interp_exact([1.0, 2.0], [0.0], beta1=0.9)


def test_object_inputs_reject_non_numbers() -> None:
    with pytest.raises(ValueError, match="param"):
        lion_step_exact(np.array(["a"], dtype=object), [1.0], [0.0], lr=0.1)
    with pytest.raises(ValueError, match="exp_avg"):
        lion_step_exact([1.0], [1.0], np.array([True], dtype=object), lr=0.1)
