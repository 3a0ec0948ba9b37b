"""Checkable claims of the source articles, each proved or refuted (docs/claims.md has the numbers).

Low-precision arithmetic is emulated with :func:`lionspec.spec.formats.round_to` (one correct
rounding per operation). Where an emulation rounds a float64 result that is itself rounded, the
test first asserts there is no double-rounding hazard for the values used.
"""

from __future__ import annotations

import math
from fractions import Fraction as F

import numpy as np
import pytest

from lionspec.spec import exact as ex
from lionspec.spec import lion_step, tiger_step
from lionspec.spec.bounds import beta_representation, decay_noop, ema_underflow, lost_step
from lionspec.spec.formats import gap_down, get_format, round_to, ulp

F16, BF16 = "float16", "bfloat16"
N = 1_000_000
SIGMA = 0.02  # a typical initialisation scale of weight matrices


def rn(x, fmt):
    return round_to(np.asarray(x, dtype=np.float64), fmt)


def emulated_lost(theta, eta, direction, fmt):
    """fl_fmt(θ − η·s) == θ by emulation, after checking that rounding θ − η·s to float64 first
    cannot change the result: η is farther than 2**-50·|θ| from half of either neighbour gap."""
    gaps = np.where((theta * direction < 0) | (theta == 0), ulp(theta, fmt), gap_down(theta, fmt))
    assert np.all(np.abs(eta - gaps / 2) > 2.0**-50 * np.maximum(np.abs(theta), gaps)), "hazard"
    return rn(theta - eta * direction, fmt) == theta


def grid_prediction(fmt, eta_of_theta, sigma, centre=0.0):
    """P(step lost) for θ ~ N(centre, σ) rounded to ``fmt``, direction ±1 with probability ½ each:
    an exact sum over the format's values v of P(RN(θ) = v)·½·(lost(v, +1) + lost(v, −1))."""
    bits = np.arange(2**16, dtype=np.uint32)
    if fmt == F16:
        v = bits.astype(np.uint16).view(np.float16).astype(np.float64)
    else:
        with np.errstate(invalid="ignore"):  # NaN bit patterns; dropped below
            v = (bits << 16).astype(np.uint32).view(np.float32).astype(np.float64)
    v = np.unique(v[np.isfinite(v)])
    v = v[np.abs(v - centre) < 12 * sigma]
    lo = np.concatenate([[-np.inf], (v[:-1] + v[1:]) / 2])
    hi = np.concatenate([(v[:-1] + v[1:]) / 2, [np.inf]])
    cdf = np.vectorize(lambda x: 0.5 * math.erfc(-(x - centre) / (sigma * math.sqrt(2))))
    p = cdf(hi) - cdf(lo)
    eta = eta_of_theta(v)
    lost = 0.5 * (lost_step(v, eta, 1.0, fmt).astype(float) + lost_step(v, eta, -1.0, fmt))
    return float(np.sum(p * lost))


def assert_consistent(measured, predicted, n):
    """Monte Carlo fraction within 5 binomial standard deviations of the exact prediction."""
    sd = math.sqrt(max(predicted * (1 - predicted), 1.0 / n) / n)
    assert abs(measured - predicted) <= 5 * sd, (measured, predicted, sd)


# --- C1 (Tiger article): "the update does not underflow as long as lr >= 6e-8" ----------------

def test_c1_eta_is_representable_in_fp16_down_to_2_pow_minus_25():
    # True about η itself: 6e-8 is just above fp16's smallest subnormal 2**-24 ≈ 5.96e-8, and
    # any η > 2**-25 rounds to a non-zero fp16 value (2**-25 itself ties to even: 0).
    assert rn([2.0**-25], F16)[0] == 0.0
    assert rn([np.nextafter(2.0**-25, 1.0), 5.9e-8, 6e-8], F16).tolist() == [2.0**-24] * 3


# --- C2 (Tiger article): "full FP16 training is safe" — refuted: θ − η is lost to rounding -----

LION_LRS = [1e-3, 1e-4, 1e-5, 1e-6]


@pytest.mark.parametrize("fmt", [F16, BF16])
@pytest.mark.parametrize("lr", LION_LRS)
def test_c2_lost_steps_for_lion_on_low_precision_weights(fmt, lr):
    rng = np.random.default_rng(1)
    theta = rn(rng.normal(0.0, SIGMA, N), fmt)
    direction = rng.choice([-1.0, 1.0], N)
    lost = lost_step(theta, lr, direction, fmt)
    np.testing.assert_array_equal(lost, emulated_lost(theta, lr, direction, fmt))
    assert_consistent(lost.mean(), grid_prediction(fmt, lambda v: np.full_like(v, lr), SIGMA), N)
    if fmt == F16 and lr == 1e-5:  # lr is far above 6e-8, yet about 12% of the steps are lost
        assert lost.mean() > 0.1


@pytest.mark.parametrize("fmt", [F16, BF16])
@pytest.mark.parametrize("alpha", [1e-3, 1e-4])
def test_c2_lost_steps_for_tiger_weight_role(fmt, alpha):
    rng = np.random.default_rng(2)
    theta = rn(rng.normal(0.0, SIGMA, N), fmt)
    direction = rng.choice([-1.0, 1.0], N)
    eta = alpha * math.sqrt(float(np.mean(theta * theta)))  # α·RMS(θ), the weight rule
    lost = lost_step(theta, eta, direction, fmt)
    np.testing.assert_array_equal(lost, emulated_lost(theta, eta, direction, fmt))
    assert_consistent(lost.mean(), grid_prediction(fmt, lambda v: np.full_like(v, eta), SIGMA), N)
    if fmt == BF16 and alpha == 1e-3:  # Tiger's default α in bf16: most weight steps are lost
        assert lost.mean() > 0.5


def test_c2_fp16_layernorm_gains_freeze_under_tiger_scale_rule():
    # Scale role: η = α/2 on θ ≈ 1. In [1, 2) the fp16 spacing is 2**-10, so a step is lost for
    # η < 2**-11, i.e. α < 2**-10 ≈ 9.77e-4; every gain >= 1 freezes, those in [0.5, 1) do not.
    rng = np.random.default_rng(3)
    gains = rn(rng.normal(1.0, 0.05, N), F16)
    direction = rng.choice([-1.0, 1.0], N)
    for alpha, frozen_at_least_one in [(2.0**-10, False), (np.nextafter(2.0**-10, 0.0), True)]:
        eta = alpha / 2
        lost = lost_step(gains, eta, direction, F16)
        ge1 = (gains > 1.0) | ((gains == 1.0) & (direction < 0))
        assert bool(lost[gains > 1.0].all()) is frozen_at_least_one
        assert not lost[(gains < 1.0) & (gains >= 0.5)].any()
        assert lost[~ge1 & (gains < 1.0)].sum() == 0
    # and through the spec itself: a 1-element scale tensor at 1.5 with α just below 2**-10
    p, _ = tiger_step(np.array([1.5], np.float16), [1.0], [0.0], step=0, lr=9.7e-4, role="scale")
    assert rn(p, F16).tolist() == [1.5]


# --- C3 (Tiger article): "m does not overflow if g does not" — holds in fp16 -----------------

@pytest.mark.parametrize("beta", [0.9, 0.95, 0.965, 0.98, 0.99, 0.999])
def test_c3_fp16_momentum_of_the_largest_gradient_stays_finite(beta):
    big = float(get_format(F16).max)
    b = rn(beta, F16)
    for w in (rn(1.0 - b, F16), rn(1.0 - beta, F16)):  # 1 − β formed in fp16, or from float64
        m = rn(rn(b * big, F16) + rn(w * big, F16), F16)
        assert np.isfinite(m) and m <= big
    # in exact arithmetic m is a convex combination: |m'| <= max(|m|, |g|)
    _, m = ex.signum_step_exact([0.0], [big], [big], lr=0.0, beta=beta)
    assert ex.to_float64(m)[0] == big


# --- C4 (Tiger article): "sign(m) can only be ±1" — refuted: m underflows to exactly 0 ---------

def test_c4_fp16_ema_of_a_small_gradient_stays_zero_so_sign_is_zero():
    g, beta = rn(1e-6, F16), 0.99
    b, w = rn(beta, F16), rn(1.0 - rn(beta, F16), F16)
    m = 0.0
    for _ in range(1000):
        m = rn(rn(b * m, F16) + rn(w * g, F16), F16)
    assert m == 0.0  # (1 − β)·g ≈ 9.8e-9 < 2**-25: every contribution rounds away
    assert bool(ema_underflow(g, beta, F16))
    assert not bool(ema_underflow(1e-5, beta, F16))
    # with m = 0 the spec's direction is 0: the parameter does not move at all
    p, _ = lion_step([0.5], [0.0], [0.0], lr=1e-3)
    assert p.tolist() == [0.5]


# --- C5 (reader comment on the Tiger article): bf16 cancellation of small updates ------------
# Quantified by test_c2_* with fmt = bfloat16: ~12% of Lion steps lost at lr = 1e-4, ~84% at
# 1e-5; Tiger's weight rule at α = 1e-3 loses ~70% (its η ≈ 2e-5 is relative to RMS(θ), but
# bf16 keeps only 8 significant bits).


# --- C6 (Tiger article): "gradient accumulation without an extra buffer" — proved ------------

def test_c6_tiger_accumulates_in_its_momentum_exactly():
    rng = np.random.default_rng(4)
    theta, m0 = rng.normal(size=5), rng.normal(size=5)
    grads = [rng.normal(size=5) for _ in range(3)]
    p, m = theta, m0
    for t, g in enumerate(grads):  # the state is (θ, m) only: no accumulation buffer
        p, m = ex.tiger_step_exact(p, g, m, step=t, lr=1e-3, beta=0.965, accumulation_steps=3)
    want = [F(0.965) * F(a) + (1 - F(0.965)) * sum(F(g[i]) for g in grads) / 3
            for i, a in enumerate(m0)]
    assert m.tolist() == want


# --- C7 (Lion paper): "Lion's update has a larger norm than other optimizers'" ---------------

def test_c7_every_lion_update_element_has_magnitude_exactly_eta():
    rng = np.random.default_rng(5)
    theta, g, m = rng.normal(size=64), rng.normal(size=64), rng.normal(size=64)
    p, _ = ex.lion_step_exact(theta, g, m, lr=1e-3)
    steps = {abs(a - F(b)) for a, b in zip(p.tolist(), theta.tolist(), strict=True)}
    assert steps == {F(1e-3)}


def adam_update_rms(grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m = v = np.zeros_like(grads[0])
    rms = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        rms.append(float(np.sqrt(np.mean(u * u))))
    return rms


def test_c7_lion_update_norm_exceeds_adams_on_noisy_gradients():
    # i.i.d. N(0, 1) gradients. Lion's update RMS is lr at every step (test above); Adam's starts
    # just below lr (m̂/√v̂ = g/(|g| + ε)) and decays as the momentum averages the noise out.
    grads = list(np.random.default_rng(6).normal(size=(200, 4096)))
    adam = adam_update_rms(grads, lr=1e-3)
    assert all(a < 1e-3 for a in adam)
    assert adam[-1] < adam[0]


# --- claims in NUMERICS.md that the brief asks the library to check ---------------------------

def test_bf16_decay_is_a_no_op_for_small_eta_lambda():
    assert bool(decay_noop(1e-4, 0.1, BF16))
    assert rn(1.0 - rn(1e-4 * 0.1, BF16), BF16) == 1.0
    # the threshold is ηλ <= 2**-9 ≈ 1.95e-3 (the tie rounds to the even 1.0): even Lion's
    # recommended large decay, λ = 1 at η = 1e-3, is lost entirely in bf16
    assert bool(decay_noop(2.0**-9, 1.0, BF16)) and bool(decay_noop(1e-3, 1.0, BF16))
    assert not bool(decay_noop(np.nextafter(2.0**-9, 1.0), 1.0, BF16))


def test_beta_representability():
    r = beta_representation([0.99, 0.999], BF16)
    assert r.represented.tolist() == [0.98828125, 1.0]
    assert r.frozen.tolist() == [False, True]
    assert round(float(r.horizon[0]), 1) == 85.3
    assert beta_representation([0.99], F16).represented.tolist() == [0.990234375]


def test_compensated_updates_recover_the_trajectory_rounding_to_nearest_does_not():
    # θ0 = 0.5, η = 1e-4, 1000 downward steps: exactly 0.4.
    eta, steps = 1e-4, 1000
    theta = rn(0.5, BF16)
    for _ in range(steps):
        theta = rn(theta - eta, BF16)
    assert theta == 0.5  # every step is lost: η < ulp(0.5)/4
    theta, comp = rn(0.5, BF16), 0.0  # Kahan: θ + comp tracks the exact sum
    for _ in range(steps):
        y = rn(-eta - comp, BF16)
        t = rn(theta + y, BF16)
        comp = rn(rn(t - theta, BF16) - y, BF16)
        theta = t
    assert round(float(theta - comp), 4) == 0.4004  # NUMERICS.md: "Kahan 0.4004"
    # stochastic rounding is unbiased: E[θ_final] = 0.4. Each rounding has variance <= gap²/4
    # with gap <= 2**-9 on [0.25, 0.5], so the mean of R runs has sd <= sqrt(n)·2**-10/sqrt(R).
    rng = np.random.default_rng(7)
    runs = 200
    theta = np.full(runs, 0.5)
    for _ in range(steps):
        x = theta - eta
        down = gap_down(theta, BF16)
        lo_v = np.where(rn(x, BF16) <= x, rn(x, BF16), rn(x, BF16) - down)
        frac = (x - lo_v) / (theta - lo_v)
        theta = np.where(rng.random(runs) < frac, theta, lo_v)
    sd = math.sqrt(steps) * 2.0**-10 / math.sqrt(runs)
    assert abs(float(theta.mean()) - 0.4) <= 5 * sd
