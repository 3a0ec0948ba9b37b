"""lionspec.impls.jax against lionspec.spec, per element, with the derived bounds.

Each algorithm × parameter dtype (fp64 with x64, fp32, fp16, bf16) × momentum dtype is stepped
several times through a jitted ``update`` + ``optax.apply_updates`` on inputs built to be hard:
near-cancelling decision variables, zero gradients and momenta, signed zeros, subnormals of the
dtype, ±Inf and NaN gradients, every Tiger role and accumulation windows, constant learning rates
and schedules. Each step is judged from the implementation's own exact inputs (check, then
continue from its state: one legal flip cannot cascade) by
:func:`lionspec.conformance.verdict.judge_step`, with XLA:CPU's flush-to-zero declared
(``_judge.py``). The last tests patch deliberately broken math into the implementation and show
that the same checks fail.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from lionspec.impls.jax import _math, lion, signum, tiger  # noqa: E402

from .._inputs import hard_grad_values  # noqa: E402
from ._judge import judge  # noqa: E402

DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
          "bfloat16": jnp.bfloat16}
HYPER = {
    "lion": dict(learning_rate=1e-3, b1=0.9, b2=0.99, weight_decay=0.1),
    "signum": dict(learning_rate=1e-3, beta=0.9, weight_decay=0.1),
    "tiger": dict(learning_rate=1e-3, beta=0.965, weight_decay=0.01),
}
FACTORY = {"lion": lion, "signum": signum, "tiger": tiger}


def x64():
    """A context with float64 enabled (``jax.enable_x64`` since jax 0.7; the experimental one
    before)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


def spec_hyper(algorithm: str, kw: dict, lr: float, step: int, role: str) -> dict:
    if algorithm == "lion":
        return dict(lr=lr, beta1=kw["b1"], beta2=kw["b2"], weight_decay=kw["weight_decay"])
    if algorithm == "signum":
        return dict(lr=lr, beta=kw["beta"], weight_decay=kw["weight_decay"])
    return dict(lr=lr, beta=kw["beta"], weight_decay=kw["weight_decay"],
                accumulation_steps=kw.get("accumulation_steps", 1), role=role,
                shrink_ratio=kw.get("shrink_ratio", 0.99), step=step)


def f64(x) -> np.ndarray:
    """The exact values of an array as float64 (every float dtype up to fp64 converts exactly)."""
    return np.asarray(x).astype(np.float64)


def decision_weights(algorithm: str, kw: dict, step: int) -> tuple[float, float]:
    """(a, b) of the decision variable a·m + b·g at this step."""
    if algorithm == "lion":
        return kw["b1"], 1.0 - kw["b1"]
    if algorithm == "signum":
        return kw["beta"], 1.0 - kw["beta"]
    k = kw.get("accumulation_steps", 1)
    return (kw["beta"] if step % k == 0 else 1.0), (1.0 - kw["beta"]) / k


def hard_grad(rng: np.random.Generator, m: np.ndarray, a: float, b: float, dtype) -> np.ndarray:
    """:func:`hard_grad_values` in ``dtype``."""
    tiny = float(jnp.finfo(dtype).smallest_normal)
    return hard_grad_values(rng, m, a, b, tiny).astype(dtype).reshape(m.shape)


def initial_theta(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    theta = rng.normal(0, 0.02, shape)
    flat = theta.reshape(-1)
    tiny = float(jnp.finfo(dtype).smallest_normal)
    flat[:6] = [0.0, -0.0, 1.0, tiny / 4, -tiny / 2, tiny]  # signed zeros and subnormals
    return theta.astype(dtype)


def run_and_judge(algorithm: str, dtype: str, mdt: str | None, *, steps: int = 4,
                  shape: tuple[int, ...] = (24, 33), role: str = "weight",
                  extra: dict | None = None, grads: list | None = None, schedule=None,
                  theta: np.ndarray | None = None, wrap=None, storage_roundings: int = 1
                  ) -> None:
    """Step a jitted update + apply_updates ``steps`` times and judge every step."""
    if dtype == "float64" or mdt == "float64":
        with x64():
            return _run(algorithm, dtype, mdt, steps, shape, role, extra, grads, schedule, theta,
                        wrap, "float64", storage_roundings)
    return _run(algorithm, dtype, mdt, steps, shape, role, extra, grads, schedule, theta, wrap,
                "float32", storage_roundings)


def _run(algorithm, dtype, mdt, steps, shape, role, extra, grads, schedule, theta, wrap,
         compute, storage_roundings):
    seed = zlib.crc32(repr((algorithm, dtype, mdt, role, extra)).encode())
    rng = np.random.default_rng(seed)
    npdt = DTYPES[dtype]
    kw = {**HYPER[algorithm], **(extra or {})}
    opt_kw = dict(kw)
    if schedule is not None:
        opt_kw["learning_rate"] = schedule
    if algorithm == "tiger":
        opt_kw["roles"] = role
    opt = FACTORY[algorithm](**opt_kw, mu_dtype=DTYPES[mdt] if mdt else None)
    if wrap is not None:
        opt = wrap(opt)
    params = jnp.asarray(initial_theta(rng, shape, npdt) if theta is None else theta)
    state = opt.init(params)

    @jax.jit
    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    for t in range(steps):
        m_before = f64(state.mu)
        a, b = decision_weights(algorithm, kw, t)
        g = (np.asarray(grads[t]).astype(npdt) if grads is not None
             else hard_grad(rng, m_before, a, b, npdt))
        g = jnp.asarray(g)
        new_params, state = step(params, state, g)
        assert new_params.dtype == params.dtype and state.mu.dtype == (DTYPES[mdt] if mdt
                                                                       else params.dtype)
        lr = float(np.asarray(schedule(t))) if schedule is not None else kw["learning_rate"]
        v = judge(algorithm, f64(params), f64(g), m_before, f64(new_params), f64(state.mu),
                  hyper=spec_hyper(algorithm, kw, lr, t, role), param=dtype,
                  momentum=mdt or dtype, compute=compute, storage_roundings=storage_roundings)
        assert v.ok, f"{algorithm}/{dtype}/{mdt}/{role} step {t}:\n{v.report()}"
        params = new_params
    return None


CASES = [(a, d, m) for a in ("lion", "signum", "tiger")
         for d, m in [("float64", None), ("float32", None), ("float16", None),
                      ("bfloat16", None), ("bfloat16", "float32"), ("float16", "float32"),
                      ("float32", "bfloat16")]]


@pytest.mark.parametrize(("algorithm", "dtype", "mdt"), CASES,
                         ids=[f"{a}-{d}-{m or 'same'}" for a, d, m in CASES])
def test_every_dtype_conforms(algorithm, dtype, mdt):
    run_and_judge(algorithm, dtype, mdt)


@pytest.mark.parametrize("role", ["weight", "embedding", "bias", "scale"])
@pytest.mark.parametrize("k", [1, 3])
def test_tiger_roles_and_windows_conform(role, k):
    run_and_judge("tiger", "float32", None, steps=2 * k, role=role,
                  extra=dict(accumulation_steps=k))


@pytest.mark.parametrize("role", ["weight", "embedding", "bias", "scale"])
def test_tiger_roles_conform_in_bfloat16_with_a_window(role):
    run_and_judge("tiger", "bfloat16", "float32", steps=4, role=role,
                  extra=dict(accumulation_steps=2))


@pytest.mark.parametrize("algorithm", ["lion", "signum", "tiger"])
def test_schedules_conform(algorithm):
    schedule = optax.linear_schedule(2e-3, 0.0, transition_steps=4)  # ends at lr = 0 exactly
    run_and_judge(algorithm, "float32", None, steps=6, schedule=schedule,
                  extra=dict(accumulation_steps=2) if algorithm == "tiger" else None)


def _nonfinite_grads(shape=(4, 8)):
    grads = []
    for t in range(3):
        g = np.full(shape, 1e-3) * (t + 1)
        g[0, 0] = np.inf
        g[1, 1] = -np.inf
        if t == 1:
            g[2, 2] = np.nan
        grads.append(g)
    return grads


@pytest.mark.parametrize(("algorithm", "role"), [
    ("lion", "weight"), ("signum", "weight"), ("tiger", "weight"), ("tiger", "embedding"),
    ("tiger", "bias"), ("tiger", "scale")])
def test_nan_and_inf_gradients_conform(algorithm, role):
    run_and_judge(algorithm, "float32", None, steps=3, shape=(4, 8), grads=_nonfinite_grads(),
                  role=role, extra=dict(accumulation_steps=2) if algorithm == "tiger" else None)


def test_zero_hyperparameters_conform():
    """β = 0 (signSGD; Lion's c = (1 − β1)·g), λ = 0, k = 1 with β = 0 for Tiger."""
    run_and_judge("lion", "float32", None, extra=dict(b1=0.0, b2=0.0, weight_decay=0.0))
    run_and_judge("signum", "bfloat16", None, extra=dict(beta=0.0, weight_decay=0.0))
    run_and_judge("tiger", "float32", None, steps=4, extra=dict(beta=0.0, accumulation_steps=2))


# --- the checks above can fail: deliberately broken math patched into the implementation --------

def _nan_grads(shape=(4, 8)):
    grads = []
    for t in range(3):
        g = np.full(shape, 1e-3) * (t + 1)
        g[0, :4] = 0.0  # with m = 0 at the first step: c is exactly 0
        g[2, 2] = np.nan
        grads.append(g)
    return grads


def _coupled_lion(original):
    def broken(theta, grad, mu, *, weight_decay, **kw):
        g = grad.astype(jnp.float32) + weight_decay * theta.astype(jnp.float32)
        return original(theta, g, mu, weight_decay=0.0, **kw)
    return broken


def _unscaled_decay(theta, s, eta, weight_decay, *, eta_may_be_zero):
    e = jnp.asarray(eta, theta.dtype)
    return -(e * s) - weight_decay * theta


@pytest.mark.parametrize(("name", "attr", "broken"), [
    ("sign(NaN) = 0, as torch.sign on CPU", "sign",
     lambda c: jnp.where(jnp.isnan(c), 0.0, jnp.sign(c)).astype(c.dtype)),
    ("where(c > 0, 1, -1): sign(0) = -1", "sign",
     lambda c: jnp.where(c > 0, 1.0, -1.0).astype(c.dtype)),
    ("coupled (L2) weight decay", "lion_leaf", _coupled_lion(_math.lion_leaf)),
    ("unscaled decay θ·(1 − λ)", "decoupled_update", _unscaled_decay),
])
def test_a_broken_lion_is_caught(monkeypatch, name, attr, broken):
    monkeypatch.setattr(_math, attr, broken)
    with pytest.raises(AssertionError, match="observed"):
        run_and_judge("lion", "float32", None, steps=3, shape=(4, 8), grads=_nan_grads())


def test_signum_order_in_lion_is_caught(monkeypatch):
    def signum_order(theta, grad, mu, *, beta1, beta2, **kw):
        return _math.signum_leaf(theta, grad, mu, beta=beta2, **kw)
    monkeypatch.setattr(_math, "lion_leaf", signum_order)
    with pytest.raises(AssertionError, match="observed"):
        run_and_judge("lion", "float32", None)


def _tiger_patch(**forced):
    original = _math.tiger_leaf

    def broken(*args, **kw):
        kw.update({k: (v(kw) if callable(v) else v) for k, v in forced.items()})
        return original(*args, **kw)
    return broken


@pytest.mark.parametrize(("name", "forced", "role", "grads"), [
    ("β applied on every micro-step", dict(first=True), "weight", None),
    ("θ moved on every micro-step", dict(last=True), "weight", None),
    ("NaN rule dropped", dict(nan=False), "weight", "nan"),
    ("shrink centre 0 for scale", dict(centre=0), "scale", "nan"),
    ("bias role given the RMS learning rate", dict(role="weight"), "bias", None),
    ("embedding role given the whole-tensor RMS", dict(role="weight"), "embedding", None),
])
def test_a_broken_tiger_is_caught(monkeypatch, name, forced, role, grads):
    monkeypatch.setattr(_math, "tiger_leaf", _tiger_patch(**forced))
    shape = (4, 8)
    theta = None
    if role == "scale":  # scales live near 1: there the centre of the shrink matters
        theta = (1.0 + np.random.default_rng(0).normal(0, 0.02, shape)).astype(np.float32)
    if role == "embedding":  # rows of different RMS
        theta = np.random.default_rng(1).normal(0, 1, shape) * np.logspace(-3, 0, 4)[:, None]
        theta = theta.astype(np.float32)
    with pytest.raises(AssertionError, match="observed"):
        run_and_judge("tiger", "float32", None, steps=4, shape=shape, role=role,
                      theta=theta, grads=[*_nan_grads(shape), np.ones(shape) * 1e-3]
                      if grads else None, extra=dict(accumulation_steps=2))


def test_updates_rounded_into_the_parameter_dtype_are_caught():
    """The apply_updates question: rounding u into bf16 before the add is a second storage
    rounding: outside the one-rounding bound near θ' ≈ 0 (θ close to η·s), inside the bound of
    an implementation that declares two storage roundings."""
    eta = 2.0**-10
    rng = np.random.default_rng(3)
    theta = (eta * rng.uniform(0.9, 1.1, (8, 16))).astype(jnp.bfloat16)
    grads = [np.full((8, 16), 1.0)]

    def cast_updates(opt):
        def update(g, s, p=None):
            u, s = opt.update(g, s, p)
            return jax.tree.map(lambda x, q: x.astype(q.dtype), u, p), s
        return optax.GradientTransformation(opt.init, update)

    kw = dict(learning_rate=eta * 1.03, weight_decay=0.37)
    run_and_judge("lion", "bfloat16", None, steps=1, shape=(8, 16), theta=theta, grads=grads,
                  extra=kw)  # the implementation as shipped: one rounding, conforms
    with pytest.raises(AssertionError, match="observed"):
        run_and_judge("lion", "bfloat16", None, steps=1, shape=(8, 16), theta=theta,
                      grads=grads, extra=kw, wrap=cast_updates)
    run_and_judge("lion", "bfloat16", None, steps=1, shape=(8, 16), theta=theta, grads=grads,
                  extra=kw, wrap=cast_updates, storage_roundings=2)
