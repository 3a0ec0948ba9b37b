"""The float64 oracle agrees with the independent exact oracle (fractions + mpmath).

Sign decisions must be equal exactly; values must be within the oracle's stated contract,
``ORACLE_REL_ERR·|exact| + ORACLE_ABS_ERR`` (plus, for Tiger's weight and embedding roles, the
RMS term ``RMS_REL_ERR·η·(1 + λ|θ|)``); non-finite results must match (NaN ↔ NaN, ±Inf equal).
Inputs span the float64 range with subnormals and signed zeros, exact and near cancellation of the
decision variable, zero gradients, NaN/Inf, every Tiger role, accumulation windows and a NaN on a
non-update micro-step. A failure message prints the case as hex floats to reproduce it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lionspec.conformance.selfcheck import sign_mismatches, value_mismatches
from lionspec.spec import (
    RMS_REL_ERR,
    lion_interp,
    lion_step,
    signum_step,
    tiger_lr,
    tiger_step,
)
from lionspec.spec import exact as ex

SPECIALS = [0.0, -0.0, 2.0**-1074, -(2.0**-1074), 2.0**-1022, 1.0, -1.0, 1e308, -1e308,
            np.finfo(np.float64).max, 2.0**-1060]
NONFINITE = [math.nan, math.inf, -math.inf]
BETAS = st.sampled_from([0.0, 0.5, 0.75, 0.9, 0.95, 0.965, 0.98, 0.99, 0.999, 0.3])


def finite64() -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True),
        st.floats(-1.0, 1.0),
        st.sampled_from(SPECIALS),
    )


def _nudge(x: float, ulps: int) -> float:
    for _ in range(abs(ulps)):
        x = float(np.nextafter(x, math.inf if ulps > 0 else -math.inf))
    return x


@st.composite
def element(draw, beta: float, *, allow_nonfinite: bool = True) -> tuple[float, float]:
    """(grad, exp_avg) for one element, biased towards cancellation of β·m + (1 − β)·g."""
    kind = draw(st.sampled_from(["random", "near", "exact", "zero_grad", "special", "nonfinite"]),
                label="element kind")
    m = draw(finite64(), label="exp_avg")
    if kind == "random":
        return draw(finite64(), label="grad"), m
    if kind == "zero_grad":
        return draw(st.sampled_from([0.0, -0.0]), label="grad"), m
    if kind in ("near", "exact") and beta > 0 and abs(m) < 1e300:
        target = -beta * m / (1.0 - beta)
        if kind == "exact" and beta in (0.5, 0.75):
            return (-m if beta == 0.5 else -3.0 * m), m
        return _nudge(target, draw(st.integers(-3, 3), label="ulps from cancellation")), m
    if kind == "nonfinite" and allow_nonfinite:
        return draw(st.sampled_from(NONFINITE), label="grad"), m
    return draw(st.sampled_from(SPECIALS), label="grad"), draw(st.sampled_from(SPECIALS))


def _hex(a) -> str:
    return "[" + ", ".join(float(x).hex() for x in np.asarray(a, dtype=float).ravel()) + "]"


def assert_values(name: str, got: np.ndarray, want: np.ndarray, extra: np.ndarray | None,
                  case: str) -> None:
    lines = value_mismatches(name, got, want, extra)
    assert not lines, "\n".join([*lines, case])


def assert_signs(name: str, got: np.ndarray, want_exact: np.ndarray, case: str) -> None:
    lines = sign_mismatches(name, got, ex.exact_sign(want_exact))
    assert not lines, "\n".join([*lines, case])


@given(data=st.data())
def test_lion_agrees_with_exact_oracle(data):
    beta1 = data.draw(BETAS, label="beta1")
    beta2 = data.draw(BETAS, label="beta2")
    n = data.draw(st.integers(1, 6), label="n")
    pairs = [data.draw(element(beta1), label=f"element {i}") for i in range(n)]
    g = np.array([p[0] for p in pairs])
    m = np.array([p[1] for p in pairs])
    theta = np.array(data.draw(st.lists(st.one_of(finite64(), st.sampled_from(NONFINITE)),
                                        min_size=n, max_size=n), label="param"))
    lr = data.draw(st.sampled_from([0.0, 1e-4, 0.1, 1.0, 2.0**-30]), label="lr")
    wd = data.draw(st.sampled_from([0.0, 0.01, 0.5]), label="weight_decay")
    case = (f"lion_step(param={_hex(theta)}, grad={_hex(g)}, exp_avg={_hex(m)}, "
            f"lr={lr.hex()}, beta1={beta1}, beta2={beta2}, weight_decay={wd})")
    _, c_sign = lion_interp(g, m, beta1=beta1)
    assert_signs("sign(c)", c_sign, ex.lion_interp_exact(g, m, beta1=beta1), case)
    p, new_m = lion_step(theta, g, m, lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd)
    ep, em = ex.lion_step_exact(theta, g, m, lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd)
    assert_values("param", p, ep, None, case)
    assert_values("exp_avg", new_m, em, None, case)


@given(data=st.data())
def test_lion_param_update_near_cancellation(data):
    # θ' = (1 − ηλ)θ − η·s cancels when θ ≈ η/(1 − ηλ): the value must still be within 2 ulps.
    lr = data.draw(st.sampled_from([1e-4, 0.1, 0.3]), label="lr")
    wd = data.draw(st.sampled_from([0.0, 0.01, 0.5]), label="weight_decay")
    target = lr / (1.0 - lr * wd)
    theta = np.array([_nudge(target, data.draw(st.integers(-4, 4), label="ulps"))
                      for _ in range(3)])
    g = np.ones(3)
    case = f"lion_step(param={_hex(theta)}, grad={_hex(g)}, exp_avg=[0]*3, lr={lr}, wd={wd})"
    p, _ = lion_step(theta, g, np.zeros(3), lr=lr, weight_decay=wd)
    ep, _ = ex.lion_step_exact(theta, g, np.zeros(3), lr=lr, weight_decay=wd)
    assert_values("param", p, ep, None, case)


@given(data=st.data())
def test_signum_agrees_with_exact_oracle(data):
    beta = data.draw(BETAS, label="beta")
    n = data.draw(st.integers(1, 6), label="n")
    pairs = [data.draw(element(beta), label=f"element {i}") for i in range(n)]
    g = np.array([p[0] for p in pairs])
    m = np.array([p[1] for p in pairs])
    theta = np.array(data.draw(st.lists(finite64(), min_size=n, max_size=n), label="param"))
    lr = data.draw(st.sampled_from([0.0, 1e-4, 0.1, 1.0]), label="lr")
    wd = data.draw(st.sampled_from([0.0, 0.01, 0.5]), label="weight_decay")
    case = (f"signum_step(param={_hex(theta)}, grad={_hex(g)}, exp_avg={_hex(m)}, lr={lr}, "
            f"beta={beta}, weight_decay={wd})")
    p, new_m = signum_step(theta, g, m, lr=lr, beta=beta, weight_decay=wd)
    ep, em = ex.signum_step_exact(theta, g, m, lr=lr, beta=beta, weight_decay=wd)
    assert_values("param", p, ep, None, case)
    assert_values("exp_avg", new_m, em, None, case)
    # the sign decision itself: with θ = 0, λ = 0, η = 1 the new θ is −sign(m')
    d, _ = signum_step(np.zeros(n), g, m, lr=1.0, beta=beta)
    assert_signs("sign(m')", -d, em, case)


def _tiger_rms_extra(theta: np.ndarray, lr: float, wd: float, role: str) -> np.ndarray | None:
    if role not in ("weight", "embedding"):
        return None
    with np.errstate(all="ignore"):
        eta = tiger_lr(theta, lr=lr, role=role) * (1 + 2.0**-50)
        extra = RMS_REL_ERR * eta * (1.0 + wd * np.abs(theta))
    return np.where(np.isfinite(extra), extra, 0.0)


@given(data=st.data())
def test_tiger_agrees_with_exact_oracle_every_role_and_window(data):
    role = data.draw(st.sampled_from(["weight", "embedding", "bias", "scale"]), label="role")
    beta = data.draw(BETAS, label="beta")
    k = data.draw(st.integers(1, 4), label="accumulation_steps")
    rows, cols = data.draw(st.integers(1, 3), label="rows"), data.draw(st.integers(1, 3),
                                                                       label="cols")
    n = rows * cols
    moderate = st.floats(-1e100, 1e100, allow_subnormal=True)
    theta = np.array(data.draw(st.lists(st.one_of(moderate, st.sampled_from(SPECIALS[:6])),
                                        min_size=n, max_size=n), label="param")).reshape(rows, cols)
    m = np.zeros((rows, cols))
    lr = data.draw(st.sampled_from([1e-3, 0.1, 0.5]), label="lr")
    wd = data.draw(st.sampled_from([0.0, 0.01, 0.3]), label="weight_decay")
    shrink = data.draw(st.sampled_from([0.99, 0.5, 1.0]), label="shrink_ratio")
    nan_step = data.draw(st.one_of(st.none(), st.integers(0, 2 * k - 1)), label="NaN micro-step")
    kw = dict(lr=lr, beta=beta, weight_decay=wd, accumulation_steps=k, role=role,
              shrink_ratio=shrink)
    ep, em = theta, m
    for t in range(2 * k):
        pairs = [data.draw(element(beta, allow_nonfinite=False), label=f"t{t} element {i}")
                 for i in range(n)]
        g = np.array([p[0] for p in pairs]).reshape(rows, cols)
        if t == nan_step:
            g.flat[data.draw(st.integers(0, n - 1), label="NaN index")] = math.nan
        assume(np.all(np.abs(g[np.isfinite(g)]) < 1e300))
        case = (f"tiger_step(param={_hex(theta)}, grad={_hex(g)}, exp_avg={_hex(m)}, step={t}, "
                f"shape={(rows, cols)}, {kw})")
        extra = _tiger_rms_extra(theta, lr, wd, role)
        theta, m = tiger_step(theta, g, m, step=t, **kw)
        ep, em = ex.tiger_step_exact(ex.to_float64(ep), g, ex.to_float64(em), step=t, **kw)
        assert_values("param", theta, ep, extra, case)
        assert_values("exp_avg", m, em, None, case)
        if (t + 1) % k:
            continue
        # resync: the next step starts from the same float64 state in both oracles
        ep, em = theta, m


@pytest.mark.parametrize("role", ["weight", "embedding", "bias", "scale"])
def test_tiger_nan_on_non_update_micro_step_agrees(role):
    theta = np.array([[0.5, -2.0], [3.0, 1.0]])
    m = np.array([[0.1, 0.0], [-0.2, 0.3]])
    g = np.array([[1.0, math.nan], [0.5, -1.0]])
    kw = dict(step=0, lr=0.1, accumulation_steps=3, role=role, shrink_ratio=0.9)
    p, new_m = tiger_step(theta, g, m, **kw)
    ep, em = ex.tiger_step_exact(theta, g, m, **kw)
    assert_values("param", p, ep, None, role)
    assert ex.to_float64(em).tolist() == m.tolist()
    np.testing.assert_array_equal(new_m, m)
    assert not np.array_equal(p, theta)


# --- the checks above can fail: deliberately broken float64 oracles that they catch -------------


def _near_cancelling(beta: float, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    m = rng.normal(size=n)
    g = np.array([_nudge(-beta * x / (1.0 - beta), int(u)) for x, u in
                  zip(m, rng.integers(-3, 4, size=n), strict=True)])
    return g, m


def test_sign_check_catches_naive_float64_sign():
    g, m = _near_cancelling(0.9)
    naive = np.sign(0.9 * m + (1.0 - 0.9) * g)
    with pytest.raises(AssertionError, match="sign"):
        assert_signs("sign(c)", naive, ex.lion_interp_exact(g, m, beta1=0.9), "naive")


def test_value_check_catches_naive_float64_momentum_under_cancellation():
    g, m = _near_cancelling(0.99)
    naive = 0.99 * m + (1.0 - 0.99) * g
    with pytest.raises(AssertionError, match="differs by"):
        assert_values("exp_avg", naive, ex.lion_interp_exact(g, m, beta1=0.99), None, "naive")


def test_value_check_catches_a_three_ulp_error():
    g, m = np.array([0.3]), np.array([0.7])
    c, _ = lion_interp(g, m, beta1=0.9)
    with pytest.raises(AssertionError, match="differs by"):
        assert_values("c", np.array([_nudge(float(c[0]), 3)]),
                      ex.lion_interp_exact(g, m, beta1=0.9), None, "3 ulps off")


def test_nonfinite_check_catches_torch_sign_freeze():
    # torch.sign(NaN) == 0 on CPU: a NaN gradient leaves θ finite. The spec says NaN.
    theta, g, m = np.array([1.0]), np.array([math.nan]), np.array([0.0])
    frozen = theta - 0.1 * 0.0
    ep, _ = ex.lion_step_exact(theta, g, m, lr=0.1)
    with pytest.raises(AssertionError):
        assert_values("param", frozen, ep, None, "torch.sign freeze")
