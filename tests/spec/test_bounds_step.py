"""Meta-tests of the per-step bounds used to judge one optimizer step: the general two-term bound
(Tiger's momentum inside a window), the NaN-shrink bound and the RMS error bound.

Each is checked against exact rationals on adversarial samples (zero violations), shown not to be
vacuous (worst observed error / bound), and shown to be violated by a deliberately wrong
arithmetic (truncation instead of round-to-nearest).
"""

from __future__ import annotations

import math
import zlib
from fractions import Fraction

import numpy as np
import pytest

from lionspec.spec import rms as oracle_rms
from lionspec.spec.bounds import axpby_error_bound, rms_relative_error, shrink_error_bound
from lionspec.spec.formats import get_format, round_to
from lionspec.spec.tiger import RMS_REL_ERR

from ._emulate import Arith, coefficient, log_uniform_values

FORMATS = ("float32", "float16", "bfloat16")
N = 20_000


def exact_axpby(a, x, b, y):
    return [a * Fraction(float(xi)) + b * Fraction(float(yi)) for xi, yi in zip(x, y, strict=True)]


def errors(observed, exact):
    return np.array([float(abs(Fraction(float(o)) - e)) for o, e in zip(observed, exact,
                                                                       strict=True)])


def near_cancelling(rng, fmt, a, b, n):
    """y placed so that a·x + b·y nearly cancels (within a few format ulps), half of the time."""
    lo, hi = (-12, 3) if fmt == "float16" else (-20, 10)  # keep −a·x/b inside fp16's range
    x = log_uniform_values(rng, n, fmt, lo, hi)
    y = log_uniform_values(rng, n, fmt, lo, hi)
    target = round_to(-a * x / b, fmt)
    pick = rng.random(n) < 0.5
    y[pick] = target[pick]
    return x, y


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("beta", "k", "first"), [(0.965, 3, True), (0.965, 3, False),
                                                   (0.9, 4, False), (0.99, 1, True)])
def test_axpby_bound_holds_and_is_tight_for_tiger_window_steps(fmt, beta, k, first):
    rng = np.random.default_rng(zlib.crc32(repr((fmt, beta, k, first)).encode()))
    a64 = beta if first else 1.0
    b64 = (1.0 - beta) / k  # what an implementation computes in float64
    b_exact = (1 - Fraction(beta)) / k
    b_err = float(abs(Fraction(b64) - b_exact)) * (1 + 2.0**-40)
    x, y = near_cancelling(rng, fmt, a64, b64, N)
    exact = exact_axpby(Fraction(a64), x, b_exact, y)
    bound = axpby_error_bound(a64, x, b64, y, compute=fmt, b_err=b_err)
    worst = 0.0
    for variant in ("rn", "via32"):
        ar = Arith(fmt)
        r = ar.add(ar.mul(coefficient(a64, fmt, variant), x),
                   ar.mul(coefficient(b64, fmt, variant), y))
        err = errors(r, exact)
        assert np.all(err <= bound), f"{np.count_nonzero(err > bound)} violations"
        worst = max(worst, float(np.max(err / bound)))
    assert worst >= 0.25, f"bound vacuous? worst ratio {worst}"
    # known-bad: the accumulation bugs of real ports — β applied on every micro-step, or the
    # gradient weighted by 1 − β instead of (1 − β)/k
    ar = Arith(fmt)
    bad_a, bad_b = (beta, b64) if not first else (a64, 1.0 - beta)
    if bad_a == a64 and bad_b == b64:  # k = 1 and first: no accumulation bug to make
        return
    r = ar.add(ar.mul(coefficient(bad_a, fmt), x), ar.mul(coefficient(bad_b, fmt), y))
    assert np.any(errors(r, exact) > bound), "the accumulation bug should violate the bound"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("ratio", "centre"), [(0.99, 0.0), (0.99, 1.0), (0.5, 1.0), (0.5, 0.0),
                                              (0.9, 0.0)])
def test_shrink_bound_holds_and_is_tight(fmt, ratio, centre):
    rng = np.random.default_rng(zlib.crc32(repr((fmt, ratio, centre)).encode()))
    theta = log_uniform_values(rng, N, fmt, -10, 4)
    theta[: N // 4] = round_to(1.0 + rng.normal(0, 1e-3, N // 4), fmt)  # near the centre 1
    exact = [(Fraction(float(t)) - Fraction(centre)) * Fraction(ratio) + Fraction(centre)
             for t in theta]
    bound = shrink_error_bound(theta, ratio, centre, compute=fmt)
    ar = Arith(fmt)
    s = coefficient(ratio, fmt)
    orders = [ar.add(ar.mul(ar.sub(theta, centre), s), centre),
              ar.add(ar.mul(s, theta), ar.mul(ar.sub(1.0, s), centre))]
    worst = 0.0
    for r in orders:
        err = errors(r, exact)
        assert np.all(err <= bound), f"{np.count_nonzero(err > bound)} violations"
        worst = max(worst, float(np.max(err / bound)))
    if not (ratio == 0.5 and centre == 0.0):  # θ·0.5 is exact: nothing to be tight against
        assert worst >= 0.25, f"bound vacuous? worst ratio {worst}"
    # known-bad: the wrong centre (a scale tensor shrunk towards 0, or a weight towards 1); with
    # s = 0.99 that is a 1% error, below bf16's resolution in one step, so test it with s = 0.5
    if ratio == 0.5:
        r = ar.add(ar.mul(ar.sub(theta, 1.0 - centre), s), 1.0 - centre)
        assert np.any(errors(r, exact) > bound), "the wrong centre should violate the bound"


def emulated_rms(theta, fmt, mode="rn"):
    """Recursive sum of squares, division by n and square root, each rounded in ``fmt``."""
    ar = Arith(fmt, mode=mode)
    total = np.zeros(theta.shape[0])
    for j in range(theta.shape[1]):
        total = ar.add(total, ar.mul(theta[:, j], theta[:, j]))
    mean = ar.div(total, theta.shape[1])
    return round_to(np.sqrt(mean), fmt) if mode == "rn" else Arith(fmt, mode=mode).mul(
        np.sqrt(mean), 1.0)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n", [1, 2, 3, 17, 256])
def test_rms_relative_error_bound_holds(fmt, n):
    if n * get_format(fmt).u >= 1:  # no worst-case bound exists for a recursive sum this long
        with pytest.raises(ValueError, match="no bound"):
            rms_relative_error(n, compute=fmt)
        return
    rng = np.random.default_rng(n)
    rows = 4000 if n <= 17 else 400
    theta = log_uniform_values(rng, rows * n, fmt, -6, 2).reshape(rows, n)
    got = emulated_rms(theta, fmt)
    want = oracle_rms(theta, axis=-1)  # float64, within RMS_REL_ERR of the exact RMS
    rel = np.abs(got - want) / want
    bound = rms_relative_error(n, compute=fmt) + RMS_REL_ERR * (1 + 2.0**-20)
    assert np.all(rel <= bound), f"{np.count_nonzero(rel > bound)} violations"
    record = float(np.max(rel / bound))
    if n in (2, 3):  # the roundings of the sum, mean and sqrt dominate: the bound is tight here
        assert record >= 0.25, record
    # a declared summation depth can only tighten the bound
    depth = math.ceil(math.log2(n)) if n > 1 else 0
    assert rms_relative_error(n, compute=fmt, summation_depth=depth) <= bound


def test_rms_bound_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        rms_relative_error(0)
    with pytest.raises(ValueError, match="n·u >= 1"):
        rms_relative_error(10**6, compute="bfloat16")
