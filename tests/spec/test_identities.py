"""Algebraic identities between the algorithms (ALGORITHMS.md), checked on the float64 oracle."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lionspec.spec import ORACLE_ABS_ERR, ORACLE_REL_ERR, lion_step, signum_step, tiger_step

BETAS = st.sampled_from([0.0, 0.5, 0.9, 0.95, 0.965, 0.98, 0.99, 0.999])
FINITE = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True, width=64)
ARRAYS = st.lists(FINITE, min_size=1, max_size=8)


@given(data=st.data())
def test_lion_with_equal_betas_is_signum(data):
    n = data.draw(st.integers(1, 8), label="n")
    vec = st.lists(FINITE, min_size=n, max_size=n)
    p, g, m = (np.array(data.draw(vec, label=name)) for name in ("param", "grad", "exp_avg"))
    beta = data.draw(BETAS, label="beta")
    lr = data.draw(st.floats(0, 1), label="lr")
    wd = data.draw(st.sampled_from([0.0, 0.01, 0.1]), label="weight_decay")
    lp, lm = lion_step(p, g, m, lr=lr, beta1=beta, beta2=beta, weight_decay=wd)
    sp, sm = signum_step(p, g, m, lr=lr, beta=beta, weight_decay=wd)
    np.testing.assert_array_equal(lp, sp)
    np.testing.assert_array_equal(lm, sm)


@given(data=st.data())
def test_tiger_core_is_lion_with_equal_betas(data):
    # Tiger's bias role has η = α/2 and no decay; with k = 1 that is Lion(β1 = β2 = β, λ = 0).
    n = data.draw(st.integers(1, 8), label="n")
    vec = st.lists(FINITE, min_size=n, max_size=n)
    p, g, m = (np.array(data.draw(vec, label=name)) for name in ("param", "grad", "exp_avg"))
    beta = data.draw(BETAS, label="beta")
    lr = data.draw(st.floats(0, 1), label="lr")
    tp, tm = tiger_step(p, g, m, step=data.draw(st.integers(0, 50), label="step"), lr=2 * lr,
                        beta=beta, weight_decay=0.3, role="bias")
    lp, lm = lion_step(p, g, m, lr=lr, beta1=beta, beta2=beta)
    np.testing.assert_array_equal(tp, lp)
    np.testing.assert_array_equal(tm, lm)


def test_tiger_weight_role_is_signum_with_lr_times_rms():
    theta = np.array([0.5, -0.5, 0.5, -0.5])  # RMS = 0.5 exactly
    g = np.array([1.0, 2.0, -3.0, 0.0])
    m = np.array([0.1, -0.2, 0.3, 0.0])
    tp, tm = tiger_step(theta, g, m, step=0, lr=0.02, beta=0.9, weight_decay=0.1)
    sp, sm = signum_step(theta, g, m, lr=0.01, beta=0.9, weight_decay=0.1)
    np.testing.assert_array_equal(tp, sp)
    np.testing.assert_array_equal(tm, sm)


@given(grads=st.lists(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3), min_size=1,
                      max_size=12), beta=BETAS)
def test_undampened_momentum_has_the_same_sign(grads, beta):
    # m'_t = β·m'_{t−1} + g_t equals m_t/(1 − β) exactly, so its sign is SIGNUM's sign.
    m = np.zeros(3)
    undamped = [F(0)] * 3
    for g in grads:
        # θ = 0, η = 1, λ = 0: the new θ is exactly −sign(m_t), the oracle's sign decision.
        p, m = signum_step(np.zeros(3), g, m, lr=1.0, beta=beta)
        undamped = [F(beta) * u + F(x) for u, x in zip(undamped, g, strict=True)]
        assert p.tolist() == [-float((u > 0) - (u < 0)) for u in undamped]


@given(data=st.data())
def test_tiger_accumulation_equals_k1_on_the_mean_gradient_within_the_bound(data):
    k = data.draw(st.integers(1, 6), label="k")
    n = 6
    beta = data.draw(BETAS, label="beta")
    vec = st.lists(st.floats(-1e6, 1e6, allow_subnormal=True), min_size=n, max_size=n)
    theta = np.array(data.draw(vec, label="param"))
    m0 = np.array(data.draw(vec, label="exp_avg"))
    grads = [np.array(data.draw(vec, label=f"grad{i}")) for i in range(k)]
    # k micro-steps, Tiger-style, with the error bound accumulated from the computed partials:
    # each micro-step is within R·|exact| + A of its exact value (R, A: the oracle's contract),
    # and |exact| ≤ |computed| + error, so error_i ≤ (R·|m_i| + A)/(1 − R).
    m, p = m0, theta
    bound = np.zeros(n)
    for t, g in enumerate(grads):
        p, m = tiger_step(p, g, m, step=t, lr=0.01, beta=beta, weight_decay=0.01,
                          accumulation_steps=k)
        bound += (ORACLE_REL_ERR * np.abs(m) + ORACLE_ABS_ERR) / (1 - ORACLE_REL_ERR)
    exact = [F(beta) * F(a) + (1 - F(beta)) * sum(F(g[i]) for g in grads) / k
             for i, a in enumerate(m0)]
    err = [abs(F(x) - e) for x, e in zip(m.tolist(), exact, strict=True)]
    assert all(e <= F(b) for e, b in zip(err, bound.tolist(), strict=True)), (err, bound)
    # k = 1 on the mean gradient (rounded once to float64): same θ wherever the sign is not
    # ambiguous, i.e. |exact| exceeds both paths' bounds.
    mean = np.array([float(sum(F(g[i]) for g in grads) / k) for i in range(n)])
    p1, m1 = tiger_step(theta, mean, m0, step=0, lr=0.01, beta=beta, weight_decay=0.01)
    bound1 = (1 - beta) * 2.0**-53 * np.abs(mean) + ORACLE_REL_ERR * np.abs(m1) + ORACLE_ABS_ERR
    clear = np.array([abs(e) for e in exact], dtype=float) > 2 * (bound + bound1)
    assert np.array_equal(np.sign(m)[clear], np.sign(m1)[clear])
    np.testing.assert_array_equal(p[clear], p1[clear])
