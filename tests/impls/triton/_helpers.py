"""Helpers shared by the Triton tests (CPU, interpreter) and the GPU tests (compiled)."""

from __future__ import annotations

import numpy as np
import torch

from lionspec.conformance.checks.core import decision_weights
from lionspec.conformance.verdict import Arithmetic, judge_step

HYPER = {
    "lion": dict(lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1),
    "signum": dict(lr=1e-3, beta=0.9, weight_decay=0.1),
    "tiger": dict(lr=1e-3, beta=0.965, weight_decay=0.01),
}
TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def f64(t: torch.Tensor) -> np.ndarray:
    """The exact values of a tensor as float64."""
    return t.detach().to(torch.float64).cpu().numpy().copy()


def hard_grad(rng: np.random.Generator, m: np.ndarray, a: float, b: float, dtype: torch.dtype,
              device: str) -> torch.Tensor:
    """A gradient whose first third cancels a·m + b·g to within rounding, with zeros, signed
    zeros and subnormals of ``dtype`` (the same construction as the torch tests)."""
    n = m.size
    g = rng.normal(0, 1e-3, n)
    k = n // 3
    g[:k] = -a * m.reshape(-1)[:k] / b
    tiny = torch.finfo(dtype).smallest_normal
    extra = [0.0] * 4 + [-0.0] * 2 + [tiny / 4, -tiny / 8, tiny, -tiny]
    room = min(len(extra), n - k)
    g[k:k + room] = extra[:room]
    return torch.tensor(g, dtype=torch.float64).to(dtype).reshape(m.shape).to(device)


def init_params(rng: np.random.Generator, shapes, dtype: torch.dtype, device: str):
    out = []
    for shape in shapes:
        t = torch.tensor(rng.normal(0, 0.02, shape), dtype=torch.float64).to(dtype)
        flat = t.view(-1)
        special = [0.0, -0.0, 1.0, torch.finfo(dtype).smallest_normal / 2][:flat.numel()]
        flat[:len(special)] = torch.tensor(special, dtype=torch.float64).to(dtype)
        out.append(t.to(device))
    return out


def arithmetic(dtype: str, mdt: str) -> Arithmetic:
    return Arithmetic(compute="float32", param_storage=dtype, momentum_storage=mdt,
                      c_form="muladd")


def spec_hyper(algorithm: str, hyper: dict, step: int, role: str) -> dict:
    h = dict(hyper)
    if algorithm == "tiger":
        h.update(step=step, role=role)
        h.setdefault("accumulation_steps", 1)
        h.setdefault("shrink_ratio", 0.99)
        for name in ("nan_check", "nan_scope"):
            h.pop(name, None)
    return h


def call(algorithm: str, params, grads, exp_avgs, hyper: dict, step: int, roles, block: int):
    from lionspec.impls.triton import lion_step_, signum_step_, tiger_step_

    if algorithm == "lion":
        return lion_step_(params, grads, exp_avgs, **hyper, block=block)
    if algorithm == "signum":
        return signum_step_(params, grads, exp_avgs, **hyper, block=block)
    return tiger_step_(params, grads, exp_avgs, **hyper, step=step, roles=roles, block=block)


def run_and_judge(algorithm: str, dtype: str, mdt: str, *, shapes, steps: int = 3,
                  roles=None, hyper=None, grads=None, block: int = 64, device: str = "cpu",
                  judge_grad=None, seed: int = 0) -> None:
    """Step a list of tensors ``steps`` times through the Triton API; judge every tensor of every
    step from its own exact inputs with :func:`judge_step` (check, then continue from the
    implementation's state). ``grads[t][i]`` overrides the hard gradients; ``judge_grad(t, i, g)``
    may change the gradient the spec is told about (to state a variation's semantics)."""
    rng = np.random.default_rng(seed)
    tdt, mtd = TORCH[dtype], TORCH[mdt]
    hyper = {**HYPER[algorithm], **(hyper or {})}
    roles = roles or ["weight"] * len(shapes)
    params = init_params(rng, shapes, tdt, device)
    exp_avgs = [torch.zeros(s, dtype=mtd, device=device) for s in shapes]
    for t in range(steps):
        a, b = decision_weights(algorithm, hyper, t)
        m_before = [f64(m) for m in exp_avgs]
        gs = ([g.to(tdt).to(device) for g in grads[t]] if grads is not None else
              [hard_grad(rng, m, a, b, tdt, device) for m in m_before])
        theta_before, g_before = [f64(p) for p in params], [f64(g) for g in gs]
        call(algorithm, params, gs, exp_avgs, hyper, t, roles, block)
        for i in range(len(params)):
            g_judged = g_before[i] if judge_grad is None else judge_grad(t, i, g_before[i])
            v = judge_step(algorithm, theta_before[i], g_judged, m_before[i], f64(params[i]),
                           f64(exp_avgs[i]), hyper=spec_hyper(algorithm, hyper, t, roles[i]),
                           arithmetic=arithmetic(dtype, mdt))
            assert v.ok, (f"{algorithm}/{dtype}/{mdt} tensor {i} {tuple(shapes[i])} "
                          f"{roles[i]} step {t}:\n{v.report()}")
