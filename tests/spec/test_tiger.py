"""Tiger: roles and their learning-rate rules, built-in k-step accumulation, the NaN rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lionspec.spec import rms, tiger_lr, tiger_step
from lionspec.spec.tiger import RMS_REL_ERR

NAN, INF = float("nan"), float("inf")


def step(p, g, m, **kw):
    kw.setdefault("step", 0)
    kw.setdefault("lr", 0.1)
    return tiger_step(p, g, m, **kw)


def test_weight_role_lr_is_alpha_times_rms_of_the_whole_tensor():
    theta = np.array([[3.0, -4.0], [0.0, 0.0]])  # RMS = sqrt(25/4) = 2.5
    p, _ = step(theta, np.ones((2, 2)), np.zeros((2, 2)), lr=0.1, weight_decay=0.0)
    assert p.tolist() == [[2.75, -4.25], [-0.25, -0.25]]


def test_weight_decay_is_inside_the_bracket_scaled_by_the_adaptive_lr():
    theta = np.full(4, 2.0)  # RMS = 2, η = 0.25·2 = 0.5
    p, _ = step(theta, np.ones(4), np.zeros(4), lr=0.25, weight_decay=0.5)
    assert p.tolist() == [2.0 - 0.5 * (1 + 0.5 * 2.0)] * 4


def test_embedding_role_uses_rms_per_row_over_the_last_axis():
    theta = np.array([[2.0, 2.0], [8.0, -8.0]])
    p, _ = step(theta, np.ones((2, 2)), np.zeros((2, 2)), lr=0.25, weight_decay=0.0,
                role="embedding")
    assert p.tolist() == [[1.5, 1.5], [6.0, -10.0]]
    assert tiger_lr(theta, lr=0.25, role="embedding").tolist() == [[0.5, 0.5], [2.0, 2.0]]


@pytest.mark.parametrize("role", ["bias", "scale"])
def test_bias_and_scale_use_half_lr_and_no_decay(role):
    p, _ = step([1.0, 100.0], [1.0, -1.0], [0.0, 0.0], lr=0.5, weight_decay=0.3, role=role)
    assert p.tolist() == [0.75, 100.25]


def test_all_zero_weight_never_moves_under_the_rms_rule():
    # A documented consequence of the original rule (zero-initialised weights stay zero).
    p, _ = step(np.zeros(3), np.ones(3), np.zeros(3), role="weight")
    assert p.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_theta_moves_only_on_the_last_micro_step_and_is_bit_identical_before(k):
    rng = np.random.default_rng(k)
    theta = rng.normal(size=7)
    theta[0] = -0.0
    m = np.zeros(7)
    for t in range(2 * k):
        new_theta, m = step(theta, rng.normal(size=7), m, step=t, accumulation_steps=k)
        if (t + 1) % k:
            assert new_theta.tobytes() == theta.tobytes()
        else:
            assert not np.array_equal(new_theta, theta)
        theta = new_theta


def test_momentum_decays_only_at_the_first_micro_step_of_a_window():
    # k = 2, β = 0.5: m = 0.5·m + 0.25·g1, then m += 0.25·g2.
    _, m = step([1.0], [4.0], [8.0], step=0, beta=0.5, accumulation_steps=2)
    assert m.tolist() == [5.0]
    _, m = step([1.0], [4.0], m, step=1, beta=0.5, accumulation_steps=2)
    assert m.tolist() == [6.0]


def test_nan_rule_is_per_tensor_keeps_momentum_and_shrinks_to_zero():
    p, m = step([2.0, -4.0], [NAN, 1.0], [0.5, 0.25], shrink_ratio=0.5)
    assert p.tolist() == [1.0, -2.0] and m.tolist() == [0.5, 0.25]


def test_nan_rule_shrinks_scale_role_towards_one():
    p, _ = step([3.0, -1.0], [NAN, 0.0], [0.0, 0.0], role="scale", shrink_ratio=0.5)
    assert p.tolist() == [2.0, 0.0]


def test_nan_rule_applies_on_a_non_update_micro_step_too():
    p, m = step([2.0], [NAN], [0.5], step=0, accumulation_steps=4, shrink_ratio=0.5)
    assert p.tolist() == [1.0] and m.tolist() == [0.5]


def test_nan_rule_catches_nan_only_not_inf():
    p, m = step([1.0, 1.0], [INF, 0.0], [0.0, 0.0], lr=0.1, weight_decay=0.0)
    assert m[0] == INF and m[1] == 0.0
    assert p[0] == 1.0 - 0.1 and p[1] == 1.0


def test_rms_is_accurate_for_extreme_magnitudes():
    for scale in (2.0**-1070, 1e-300, 1.0, 1e300, np.finfo(np.float64).max):
        x = np.array([3.0, 4.0]) * (scale / 4.0)
        got = float(rms(x))
        want = math.sqrt(12.5) * (scale / 4.0)
        if want > 2.0**-1022:
            assert abs(got - want) <= RMS_REL_ERR * want + 2 * math.ulp(want)
    assert float(rms([INF, 1.0])) == INF
    assert math.isnan(float(rms([NAN, 1.0])))
    with pytest.raises(ValueError, match="empty"):
        rms(np.zeros(0))


def test_zero_dim_embedding_uses_the_absolute_value():
    p, _ = step(np.array(-2.0), np.array(1.0), np.array(0.0), lr=0.5, weight_decay=0.0,
                role="embedding")
    assert p.tolist() == -3.0
