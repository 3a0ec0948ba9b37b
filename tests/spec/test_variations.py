"""Every named variation deviates from the canonical spec where it should, and only there."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from lionspec.spec import (
    VARIATIONS,
    lion_accumulated_step,
    lion_step,
    signum_step,
    step_tensors,
    tiger_step,
    trajectory,
)

NAN, INF = float("nan"), float("inf")


def lion(variation, p, g, m, **kw):
    return VARIATIONS[variation].step("lion", p, g, m, **kw)


def test_canonical_variation_is_the_spec():
    args = (np.array([1.0, -2.0]), np.array([0.3, NAN]), np.array([-0.1, 0.0]))
    for got, want in zip(lion("canonical", *args, lr=0.1, weight_decay=0.2),
                         lion_step(*args, lr=0.1, weight_decay=0.2), strict=True):
        np.testing.assert_array_equal(got, want)


def test_coupled_decay_adds_lambda_theta_to_the_gradient():
    # θ = 1, g = 0, m = 0, λ = 0.5: coupled c = 0.1·0.5 > 0 → θ − η; decoupled: θ(1 − ηλ) only.
    p, m = lion("decay:coupled", [1.0], [0.0], [0.0], lr=0.1, weight_decay=0.5)
    assert p.tolist() == [0.9]
    assert m.tolist() == [float((1 - F(0.99)) * F(0.5))]
    p, _ = lion_step([1.0], [0.0], [0.0], lr=0.1, weight_decay=0.5)
    assert p.tolist() == [0.95]


def test_lr_independent_decay_follows_only_the_schedule_shape():
    p, _ = lion("decay:lr_independent", [1.0], [0.0], [0.0], lr=0.05, weight_decay=0.5, lr_max=0.1)
    assert p.tolist() == [0.75]  # 1 − 0.5·0.05/0.1
    p, _ = lion("decay:lr_independent", [1.0], [0.0], [0.0], lr=0.1, weight_decay=0.5)
    assert p.tolist() == [0.5]  # lr_max defaults to the step's lr: 1 − λ


def test_unscaled_decay_ignores_the_lr():
    p, _ = lion("decay:unscaled", [1.0], [0.0], [0.0], lr=0.1, weight_decay=0.25)
    assert p.tolist() == [0.75]


@pytest.mark.parametrize(("variation", "moved"), [("sign0:+1", 0.5), ("sign0:-1", 1.5),
                                                    ("canonical", 1.0)])
def test_sign_zero_conventions(variation, moved):
    p, _ = lion(variation, [1.0], [0.0], [0.0], lr=0.5)
    assert p.tolist() == [moved]
    # and they agree with the spec where c ≠ 0
    p, _ = lion(variation, [1.0], [1.0], [0.0], lr=0.5)
    assert p.tolist() == [0.5]


def test_where_kernel_moves_a_nan_element_by_plus_eta():
    p, m = lion("nan:where", [1.0, 1.0], [NAN, 2.0], [0.0, 0.0], lr=0.5)
    assert p.tolist() == [1.5, 0.5] and np.isnan(m[0])


def test_freeze_decays_a_nan_element_and_never_propagates_it():
    p, m = lion("nan:freeze", [1.0], [NAN], [0.0], lr=0.5, weight_decay=0.5)
    assert p.tolist() == [0.75] and np.isnan(m[0])
    p2, _ = lion("nan:freeze", p, [1.0], m, lr=0.5)  # momentum NaN forever: θ frozen
    assert p2.tolist() == [0.75]


def test_skip_tensor_keeps_state_and_canonical_propagates():
    p, m = lion("nan:skip-tensor", [1.0, 2.0], [NAN, 1.0], [0.5, 0.5], lr=0.5)
    assert p.tolist() == [1.0, 2.0] and m.tolist() == [0.5, 0.5]
    p, _ = lion("nan:skip-tensor", [1.0, 2.0], [INF, 1.0], [0.5, 0.5], lr=0.5)
    assert p.tolist() == [0.5, 1.5]  # NaN only
    p, _ = lion("nan:skip-tensor-nonfinite", [1.0, 2.0], [INF, 1.0], [0.5, 0.5], lr=0.5)
    assert p.tolist() == [1.0, 2.0]


def test_global_skip_applies_to_every_tensor():
    ps, _ = step_tensors("lion", [[1.0], [2.0]], [[NAN], [1.0]], [[0.0], [0.0]],
                          variation="nan:skip-global", lr=0.5)
    assert [p.tolist() for p in ps] == [[1.0], [2.0]]
    ps, _ = step_tensors("lion", [[1.0], [2.0]], [[NAN], [1.0]], [[0.0], [0.0]], lr=0.5)
    assert np.isnan(ps[0][0]) and ps[1].tolist() == [1.5]


def test_tiger_nan_variations():
    kw = dict(step=0, lr=0.1, weight_decay=0.0)
    p, _ = VARIATIONS["nan:propagate"].step("tiger", [1.0, 1.0], [NAN, 1.0], [0.0, 0.0], **kw)
    assert np.isnan(p[0]) and p[1] == 0.9
    p, m = VARIATIONS["nan:shrink-nonfinite"].step("tiger", [1.0, 1.0], [INF, 1.0], [0.5, 0.0],
                                                   **kw)
    assert p.tolist() == [0.99, 0.99] and m.tolist() == [0.5, 0.0]
    canon, _ = tiger_step([1.0, 1.0], [INF, 1.0], [0.5, 0.0], **kw)
    assert canon.tolist() == [0.9, 0.9]
    ps, ms = step_tensors("tiger", [[2.0], [4.0]], [[NAN], [1.0]], [[0.0], [0.5]],
                          variation="nan:shrink-global", roles=["weight", "scale"], lr=0.1)
    s = F(0.99)
    assert [p.tolist() for p in ps] == [[float(s * 2)], [float((4 - 1) * s + 1)]]
    assert ms[1].tolist() == [0.5]


def test_variation_misuse_is_a_clear_error():
    with pytest.raises(ValueError, match="does not apply to 'lion'"):
        VARIATIONS["nan:shrink-global"].step("lion", [1.0], [1.0], [0.0], lr=0.1)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        lion("canonical", [1.0], [1.0], [0.0], lr=0.1, beta=0.9)
    with pytest.raises(ValueError, match="lr is required"):
        lion("canonical", [1.0], [1.0], [0.0])
    with pytest.raises(ValueError, match="variation must be one of"):
        step_tensors("lion", [[1.0]], [[1.0]], [[0.0]], variation="nope", lr=0.1)
    with pytest.raises(ValueError, match="roles apply to algorithm='tiger'"):
        step_tensors("lion", [[1.0]], [[1.0]], [[0.0]], roles=["bias"], lr=0.1)


def test_every_variation_is_documented():
    for name, var in VARIATIONS.items():
        assert var.name == name and var.summary and var.found


def test_lion_accumulated_is_lion_on_the_exact_mean():
    rng = np.random.default_rng(3)
    theta, m = rng.normal(size=16), rng.normal(size=16)
    grads = [rng.normal(size=16) for _ in range(3)]
    p, new_m = lion_accumulated_step(theta, grads, m, lr=0.01, weight_decay=0.1)
    for i in range(16):
        gbar = sum(F(g[i]) for g in grads) / 3
        c = F(0.9) * F(m[i]) + (1 - F(0.9)) * gbar
        s = (c > 0) - (c < 0)
        assert p[i] == float((1 - F(0.01) * F(0.1)) * F(theta[i]) - F(0.01) * s)
        assert new_m[i] == float(F(0.99) * F(m[i]) + (1 - F(0.99)) * gbar)
    single = lion_accumulated_step(theta, grads[:1], m, lr=0.01, weight_decay=0.1)
    for got, want in zip(single, lion_step(theta, grads[0], m, lr=0.01, weight_decay=0.1),
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_trajectory_follows_a_schedule_and_tiger_micro_steps():
    states = list(trajectory("signum", [1.0], [[1.0]] * 3, lr=lambda t: 0.1 * (t + 1)))
    theta, want = F(1.0), []
    for t in range(3):
        theta = F(float(theta)) - F(0.1 * (t + 1))  # the oracle rounds θ once per step
        want.append([float(theta)])
    assert [s[0].tolist() for s in states] == want
    p, m = np.array([1.0, -1.0]), np.zeros(2)
    manual = []
    for t in range(4):
        p, m = tiger_step(p, [0.5, 0.5], m, step=t, lr=0.1, accumulation_steps=2)
        manual.append(p)
    auto = [s[0] for s in trajectory("tiger", [1.0, -1.0], [[0.5, 0.5]] * 4, lr=0.1,
                                     accumulation_steps=2)]
    for a, b in zip(auto, manual, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="lr schedule returned"):
        list(trajectory("lion", [1.0], [[1.0]], lr=lambda t: float("nan")))
    with pytest.raises(ValueError, match="step is supplied"):
        list(trajectory("tiger", [1.0], [[1.0]], lr=0.1, step=3))


def test_signum_variations_apply():
    p, _ = VARIATIONS["decay:coupled"].step("signum", [1.0], [0.0], [0.0], lr=0.1,
                                            weight_decay=0.5)
    assert p.tolist() == [0.9]
    assert signum_step([1.0], [0.0], [0.0], lr=0.1, weight_decay=0.5)[0].tolist() == [0.95]
