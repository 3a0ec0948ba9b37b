"""Lion and SIGNUM: update order, decay, sign(0), exact signs and NaN/Inf, on constructed inputs."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np

from lionspec.spec import lion_interp, lion_step, signum_step

NAN, INF = float("nan"), float("inf")


def test_update_order_lion_uses_old_momentum_signum_the_new_one():
    # m = 1, g = -0.5, β1 = 0.9, β2 = 0.5: Lion's c = 0.9 - 0.05 > 0 (θ goes down), while the new
    # momentum 0.5·1 + 0.5·(-0.5) = 0.25 > 0 too; choose g = -3: c = 0.9 - 0.3 = 0.6 > 0 but the
    # new momentum at β = 0.5 is 0.5 - 1.5 = -1 < 0, so SIGNUM goes up. The orders are told apart.
    p, m = lion_step([1.0], [-3.0], [1.0], lr=0.1, beta1=0.9, beta2=0.5)
    assert p.tolist() == [0.9] and m.tolist() == [-1.0]
    p, m = signum_step([1.0], [-3.0], [1.0], lr=0.1, beta=0.5)
    assert p.tolist() == [1.1] and m.tolist() == [-1.0]


def test_lion_momentum_update_comes_after_the_sign_decision():
    # If Lion took sign(β2·m + (1−β2)·g) (SIGNUM order) it would move θ up here.
    p, _ = lion_step([0.0], [-3.0], [1.0], lr=1.0, beta1=0.9, beta2=0.5)
    assert p.tolist() == [-1.0]


def test_decoupled_decay_in_one_expression():
    # θ' = θ − η(sign(c) + λθ): with θ = 2, η = 0.25, λ = 0.5, c > 0: 2 − 0.25·(1 + 1) = 1.5.
    p, _ = lion_step([2.0], [1.0], [0.0], lr=0.25, weight_decay=0.5)
    assert p.tolist() == [1.5]
    p, _ = signum_step([2.0], [1.0], [0.0], lr=0.25, weight_decay=0.5)
    assert p.tolist() == [1.5]


def test_decay_applies_when_gradient_is_zero_and_sign_zero_does_not_drift():
    p, m = lion_step([2.0, -0.0, 0.0], [0.0, -0.0, 0.0], [0.0, 0.0, -0.0], lr=0.25)
    assert p.tolist() == [2.0, 0.0, 0.0] and m.tolist() == [0.0, 0.0, 0.0]
    p, _ = lion_step([2.0], [0.0], [0.0], lr=0.25, weight_decay=0.5)
    assert p.tolist() == [1.75]


def test_exact_cancellation_gives_sign_zero():
    # β1 = 0.75: c = 0.75·1 + 0.25·(−3) = 0 exactly, so θ only decays.
    c, s = lion_interp([-3.0], [1.0], beta1=0.75)
    assert c.tolist() == [0.0] and s.tolist() == [0.0]
    p, _ = lion_step([1.0], [-3.0], [1.0], lr=0.5, beta1=0.75, weight_decay=0.5)
    assert p.tolist() == [0.75]


def test_near_cancellation_sign_is_exact_where_naive_float64_gets_it_wrong():
    beta1 = 0.9
    w = 1.0 - beta1
    m = np.array([1.0, 1.0, 1.0])
    g_exact = -beta1 / w  # the float64 nearest to the cancelling gradient
    g = np.array([np.nextafter(g_exact, -INF), g_exact, np.nextafter(g_exact, INF)])
    expected = [int((F(beta1) + F(w) * F(x) > 0) - (F(beta1) + F(w) * F(x) < 0)) for x in g]
    _, s = lion_interp(g, m, beta1=beta1)
    assert s.tolist() == expected
    naive = np.sign(beta1 * m + w * g)
    assert naive.tolist() != expected  # the naive sign is wrong on at least one: the check bites


def test_sign_is_exact_for_decision_values_that_underflow_to_zero():
    # c = 0.25·2**-1074 is positive but rounds to 0 in float64; the step must still move θ.
    tiny = 2.0**-1074
    c, s = lion_interp([0.0], [tiny], beta1=0.25)
    assert c.tolist() == [0.0] and s.tolist() == [1.0]
    p, _ = lion_step([1.0], [0.0], [tiny], lr=0.5, beta1=0.25)
    assert p.tolist() == [0.5]


def test_nan_gradient_element_gives_nan_param_and_momentum_elementwise():
    p, m = lion_step([1.0, 2.0], [NAN, 1.0], [0.0, 0.0], lr=0.1)
    assert np.isnan(p[0]) and np.isnan(m[0])
    assert p[1] == 1.9 and m[1] == np.float64(1.0) - 0.99
    p, m = signum_step([1.0, 2.0], [NAN, 1.0], [0.0, 0.0], lr=0.1)
    assert np.isnan(p[0]) and np.isnan(m[0]) and p[1] == 1.9


def test_infinite_gradient_moves_by_eta_and_makes_the_momentum_infinite():
    p, m = lion_step([1.0, 1.0], [INF, -INF], [0.0, 0.0], lr=0.5)
    assert p.tolist() == [0.5, 1.5] and m.tolist() == [INF, -INF]
    # opposite infinities in c: NaN
    p, m = lion_step([1.0], [-INF], [INF], lr=0.5)
    assert np.isnan(p[0]) and np.isnan(m[0])


def test_zero_coefficients_are_absent_terms():
    # lr = 0 leaves θ unchanged even for a NaN gradient; β1 = 0 ignores an infinite momentum.
    p, m = lion_step([1.0], [NAN], [0.0], lr=0.0)
    assert p.tolist() == [1.0] and np.isnan(m[0])
    p, _ = lion_step([1.0], [-1.0], [INF], lr=0.5, beta1=0.0)
    assert p.tolist() == [1.5]
    p, _ = lion_step([INF], [1.0], [0.0], lr=0.5, weight_decay=0.0)
    assert p.tolist() == [INF]
    p, _ = lion_step([INF], [1.0], [0.0], lr=0.5, weight_decay=0.1)  # (1 − ηλ)·∞ − η = ∞
    assert p.tolist() == [INF]


def test_huge_and_subnormal_magnitudes_do_not_overflow_or_lose_the_sign():
    big = np.finfo(np.float64).max
    p, m = lion_step([0.0, 0.0], [big, -big], [big, -big], lr=1.0)
    assert p.tolist() == [-1.0, 1.0] and m.tolist() == [big, -big]
    sub = 2.0**-1074
    p, m = lion_step([0.0, 0.0], [sub, -sub], [0.0, 0.0], lr=1.0)
    assert p.tolist() == [-1.0, 1.0]


def test_signum_beta_zero_is_signsgd():
    g = np.array([3.0, -2.0, 0.0])
    p, m = signum_step(np.zeros(3), g, np.array([-1.0, 1.0, 5.0]), lr=1.0, beta=0.0)
    assert p.tolist() == [-1.0, 1.0, 0.0] and m.tolist() == g.tolist()
