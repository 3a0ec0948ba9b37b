"""Tiger's RMS over the whole float32 range: tiny and huge θ (the sum of squares is float64).

A float32 sum of squares flushes θ² to zero below |θ| ~ 1e-19 (RMS 0: θ would not move at all)
and overflows above ~1.8e19; both steps are judged against the spec like every other.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from lionspec.conformance.verdict import judge_step  # noqa: E402
from lionspec.impls.triton import tiger_step_  # noqa: E402

from ._helpers import arithmetic, f64  # noqa: E402


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20], ids=["1e-30", "1e-20", "1e20"])
@pytest.mark.parametrize("role", ["weight", "embedding"])
def test_tiger_rms_is_right_for_tiny_and_huge_parameters(scale, role):
    rng = np.random.default_rng(7)
    theta = torch.tensor(rng.normal(0, scale, (4, 33)), dtype=torch.float32)
    grad = torch.tensor(rng.normal(0, 1, (4, 33)), dtype=torch.float32)
    m = torch.zeros(4, 33)
    before, g0 = f64(theta), f64(grad)
    tiger_step_([theta], [grad], [m], lr=1e-3, step=0, weight_decay=0.01, roles=role, block=64)
    assert not np.array_equal(f64(theta), before)  # it moved: the RMS is not 0
    v = judge_step("tiger", before, g0, np.zeros((4, 33)), f64(theta), f64(m),
                   hyper=dict(lr=1e-3, beta=0.965, weight_decay=0.01, step=0, role=role),
                   arithmetic=arithmetic("float32", "float32"))
    assert v.ok, v.report()
