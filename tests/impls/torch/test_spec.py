"""lionspec.impls.torch against lionspec.spec, per element, with the derived bounds.

Every code path (for-loop, foreach, fused under both CPU backends: the native C kernel and
torch.compile) × parameter dtype (fp64, fp32, fp16, bf16) × momentum
dtype × algorithm is stepped several times on inputs built to be hard: near-cancelling decision
variables, zero gradients and momenta, signed zeros, subnormals of the dtype, ±Inf and NaN
gradients, non-contiguous parameters, every Tiger role and accumulation windows. Each step is
judged from the implementation's own exact inputs (check, then continue from its state: one legal
flip cannot cascade) by :func:`lionspec.conformance.verdict.judge_step`; the test fails on any
element that is neither exact, within its bound, nor an ambiguous flip allowed by the bound.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lionspec.conformance.verdict import Arithmetic, judge_step  # noqa: E402
from lionspec.impls.torch import Lion, Signum, Tiger  # noqa: E402

from .._inputs import hard_grad_values  # noqa: E402

DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
          "bfloat16": torch.bfloat16}
PATHS = {"forloop": dict(foreach=False, fused=False), "foreach": dict(foreach=True),
         "fused": dict(fused=True), "fused-compile": dict(fused=True)}


@pytest.fixture(autouse=True)
def _fused_backend(request, monkeypatch):
    """``fused`` runs the native kernel, ``fused-compile`` torch.compile (LIONSPEC_FUSED_CPU)."""
    spec = getattr(request.node, "callspec", None)
    path = spec.params.get("path") if spec else None
    if path in ("fused", "fused-compile"):
        monkeypatch.setenv("LIONSPEC_FUSED_CPU", "native" if path == "fused" else "compile")
HYPER = {
    "lion": dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1),
    "signum": dict(lr=1e-3, momentum=0.9, weight_decay=0.1),
    "tiger": dict(lr=1e-3, beta=0.965, weight_decay=0.01),
}


def spec_hyper(algorithm: str, kwargs: dict, step: int, role: str = "weight") -> dict:
    if algorithm == "lion":
        b1, b2 = kwargs["betas"]
        return dict(lr=kwargs["lr"], beta1=b1, beta2=b2, weight_decay=kwargs["weight_decay"])
    if algorithm == "signum":
        return dict(lr=kwargs["lr"], beta=kwargs["momentum"], weight_decay=kwargs["weight_decay"])
    return dict(lr=kwargs["lr"], beta=kwargs["beta"], weight_decay=kwargs["weight_decay"],
                accumulation_steps=kwargs.get("accumulation_steps", 1), role=role,
                shrink_ratio=kwargs.get("shrink_ratio", 0.99), step=step)


def f64(t: torch.Tensor) -> np.ndarray:
    """The exact values of a tensor as float64 (every float dtype up to fp64 converts exactly)."""
    return t.detach().to(torch.float64).cpu().numpy().copy()


def decision_weights(algorithm: str, kwargs: dict, step: int) -> tuple[float, float]:
    """(a, b) of the decision variable a·m + b·g at this step."""
    if algorithm == "lion":
        return kwargs["betas"][0], 1.0 - kwargs["betas"][0]
    if algorithm == "signum":
        return kwargs["momentum"], 1.0 - kwargs["momentum"]
    k = kwargs.get("accumulation_steps", 1)
    beta = kwargs["beta"]
    return (beta if step % k == 0 else 1.0), (1.0 - beta) / k


def hard_grad(rng: np.random.Generator, m: np.ndarray, a: float, b: float, dtype: torch.dtype
              ) -> torch.Tensor:
    """:func:`hard_grad_values` in ``dtype``."""
    g = hard_grad_values(rng, m, a, b, torch.finfo(dtype).smallest_normal)
    return torch.tensor(g, dtype=torch.float64).to(dtype).reshape(m.shape)


def make(algorithm: str, params, path: str, mdt, **extra):
    cls = {"lion": Lion, "signum": Signum, "tiger": Tiger}[algorithm]
    return cls(params, **HYPER[algorithm], **PATHS[path], momentum_dtype=mdt, **extra)


def arithmetic(dtype: str, mdt: str | None) -> Arithmetic:
    compute = "float64" if dtype == "float64" else "float32"
    return Arithmetic(compute=compute, param_storage=dtype, momentum_storage=mdt or dtype,
                      c_form="muladd")


def run_and_judge(algorithm, path, dtype, mdt, *, steps=4, shape=(24, 33), role="weight",
                  extra=None, grads=None, noncontiguous=False):
    """Step an optimizer ``steps`` times and judge every step from its own exact inputs."""
    # a seed per case that does not depend on PYTHONHASHSEED (str hashes are salted per process)
    rng = np.random.default_rng(zlib.crc32(repr((algorithm, path, dtype, mdt, role)).encode()))
    tdt = DTYPES[dtype]
    theta = torch.tensor(rng.normal(0, 0.02, shape), dtype=torch.float64).to(tdt)
    theta.view(-1)[:3] = torch.tensor([0.0, -0.0, 1.0], dtype=tdt)
    if noncontiguous:  # a leaf whose memory is laid out transposed
        theta = theta.t().contiguous().t()
        assert not theta.is_contiguous()
    p = torch.nn.Parameter(theta)
    group = {"params": [p], **({"role": role} if algorithm == "tiger" else {})}
    opt = make(algorithm, [group], path, DTYPES[mdt] if mdt else None, **(extra or {}))
    kwargs = {**HYPER[algorithm], **(extra or {})}
    for t in range(steps):
        state = opt.state.get(p, {})
        m_before = f64(state["exp_avg"]) if "exp_avg" in state else np.zeros(shape)
        a, b = decision_weights(algorithm, kwargs, t)
        p.grad = grads[t].to(tdt) if grads is not None else hard_grad(rng, m_before, a, b, tdt)
        theta_before, g_before = f64(p), f64(p.grad)
        opt.step()
        hyper = spec_hyper(algorithm, kwargs, step=t, role=role)
        if algorithm != "tiger":
            hyper.pop("step", None)
        v = judge_step(algorithm, theta_before, g_before, m_before, f64(p),
                       f64(opt.state[p]["exp_avg"]), hyper=hyper,
                       arithmetic=arithmetic(dtype, mdt))
        assert v.ok, f"{algorithm}/{path}/{dtype}/{mdt} step {t}:\n{v.report()}"


CASES = [(a, p, d, m) for a in ("lion", "signum", "tiger") for p in PATHS
         for d, m in [("float64", None), ("float32", None), ("float16", None),
                      ("bfloat16", None), ("bfloat16", "float32"), ("float16", "float32")]]


@pytest.mark.parametrize(("algorithm", "path", "dtype", "mdt"), CASES,
                         ids=[f"{a}-{p}-{d}-{m or 'same'}" for a, p, d, m in CASES])
def test_every_path_and_dtype_conforms(algorithm, path, dtype, mdt):
    run_and_judge(algorithm, path, dtype, mdt)


@pytest.mark.parametrize("role", ["weight", "embedding", "bias", "scale"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("path", list(PATHS))
def test_tiger_roles_and_windows_conform(role, k, path):
    run_and_judge("tiger", path, "float32", None, steps=2 * k, role=role,
                  extra=dict(accumulation_steps=k))


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("algorithm", ["lion", "signum", "tiger"])
def test_nan_and_inf_gradients_conform(algorithm, path):
    shape = (4, 8)
    grads = []
    for t in range(3):
        g = torch.full(shape, 1e-3) * (t + 1)
        g[0, 0] = float("inf")
        g[1, 1] = float("-inf")
        if t == 1:
            g[2, 2] = float("nan")
        grads.append(g)
    run_and_judge(algorithm, path, "float32", None, steps=3, shape=shape, grads=grads,
                  extra=dict(accumulation_steps=2) if algorithm == "tiger" else None)


@pytest.mark.parametrize("path", list(PATHS))
def test_non_contiguous_params_conform(path):
    for algorithm in ("lion", "signum", "tiger"):
        run_and_judge(algorithm, path, "bfloat16", "float32", steps=2, noncontiguous=True)


# --- the checks above can fail: deliberately broken signs patched into the implementation --------

def _nan_grads(shape=(4, 8)):
    grads = []
    for t in range(3):
        g = torch.full(shape, 1e-3) * (t + 1)
        g[0, :4] = 0.0  # with m = 0 at the first step: c is exactly 0
        g[2, 2] = float("nan")
        grads.append(g)
    return grads


@pytest.mark.parametrize(("name", "broken"), [
    ("torch.sign: sign(NaN) = 0", lambda ops, c: torch.sign(c)),
    ("where(c > 0, 1, -1)", lambda ops, c: torch.where(c > 0, 1.0, -1.0).to(c.dtype)),
])
def test_a_broken_sign_in_the_implementation_is_caught(monkeypatch, name, broken):
    from lionspec.impls.torch import _math

    monkeypatch.setattr(_math, "sign_nan", broken)
    with pytest.raises(AssertionError, match="observed"):
        run_and_judge("lion", "forloop", "float32", None, steps=3, shape=(4, 8),
                      grads=_nan_grads())
