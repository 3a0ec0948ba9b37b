"""Helpers shared by the torch implementation tests."""

from __future__ import annotations

import torch

_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN payloads and signed zeros included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = a.detach().contiguous(), b.detach().contiguous()
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    width = _INT[a.element_size()]
    return torch.equal(a.view(width), b.view(width))


def assert_tiger_step_conforms(before: torch.Tensor, grad: torch.Tensor, after: torch.Tensor,
                               exp_avg: torch.Tensor, *, role: str, **hyper: float) -> None:
    """One Tiger step from zero momentum (micro-step 0, k = 1) judged per element against the
    spec with the derived bounds of an fp32 mul+add implementation."""
    import numpy as np

    from lionspec.conformance.verdict import Arithmetic, judge_step

    def f64(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(torch.float64).numpy()

    v = judge_step("tiger", f64(before), f64(grad), np.zeros(tuple(before.shape)), f64(after),
                   f64(exp_avg), hyper={**hyper, "step": 0, "role": role},
                   arithmetic=Arithmetic(compute="float32", c_form="muladd"))
    assert v.ok, v.report()
