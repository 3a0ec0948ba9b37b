"""compensated=True: θ + compensation tracks the spec's float64 trajectory over 1000 steps.

Setup: bf16 parameters with fp32 momentum, λ > 0, gradients whose sign is fixed per element and
whose magnitude stays in [0.5, 1.5]·1e-3, so Lion's c never comes near 0 and every sign decision
equals the spec's; the only differences are rounding.

Bound (derived from the implementation's expressions, docs/torch.md): with ``x = fl32(θ + comp)``,
``new = fl32(fl32(x·keep) − η·s)``, ``hi = RN_bf16(new)`` and ``comp' = RN_bf16(new − hi)``
(``new − hi`` exact in fp32), the tracked value ``hi + comp'`` differs from the exact step of x by
at most ``e = u32·(|x| + |x·keep| + |new|) + u_bf16·|new − hi| + ε_bf16`` plus the rounding of x
itself, ``u32·|x|``. The spec's step from the exact state is ``keep·θ − η·s``: an error E carried in
the state contributes ``keep·E`` with ``0 < keep <= 1``, so after T steps the distance to the spec
is at most the sum of the per-step terms, evaluated on the observed values.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lionspec.impls.torch import Lion  # noqa: E402
from lionspec.spec import trajectory  # noqa: E402

U32, UBF = 2.0**-24, 2.0**-8
EPS_BF = UBF * 2.0**-126
STEPS, LR, WD = 1000, 1e-4, 0.1


def f64(t):
    return t.detach().to(torch.float64).numpy().copy()


def run(compensated: bool):
    rng = np.random.default_rng(0)
    n = 64
    theta0 = torch.tensor(rng.normal(0.5, 0.2, n)).to(torch.bfloat16)
    signs = rng.choice([-1.0, 1.0], n)
    grads = [torch.tensor(signs * rng.uniform(0.5, 1.5, n) * 1e-3).to(torch.bfloat16)
             for _ in range(STEPS)]
    p = torch.nn.Parameter(theta0.clone())
    opt = Lion([p], lr=LR, betas=(0.9, 0.99), weight_decay=WD, momentum_dtype=torch.float32,
               compensated=compensated)
    keep = 1.0 - LR * WD
    bound = np.zeros(n)
    for g in grads:
        state = opt.state.get(p, {})
        comp = f64(state["compensation"]) if compensated and "compensation" in state else 0.0
        x = np.abs(f64(p) + comp)
        p.grad = g
        opt.step()
        comp_new = f64(opt.state[p]["compensation"]) if compensated else 0.0
        new = np.abs(f64(p) + comp_new)
        bound += (U32 * (2 * x + keep * x + new) + UBF * np.abs(comp_new) * (1 + 2 * UBF)
                  + EPS_BF) * (1 + 2.0**-40)
    spec_theta, _ = list(trajectory("lion", f64(theta0), [f64(g) for g in grads], lr=LR,
                                    beta1=0.9, beta2=0.99, weight_decay=WD))[-1]
    tracked = f64(p) + (f64(opt.state[p]["compensation"]) if compensated else 0.0)
    return tracked, spec_theta, bound


def test_compensated_bf16_tracks_the_spec_trajectory_within_the_derived_bound():
    tracked, spec_theta, bound = run(compensated=True)
    err = np.abs(tracked - spec_theta)
    assert np.all(err <= bound), (err.max(), bound[np.argmax(err)])
    # the bound is not vacuous: it is far below the distance travelled (≈ 1000·η = 0.1)
    assert bound.max() < 0.1 * STEPS * LR


def test_without_compensation_bf16_falls_outside_that_bound():
    # the same check on plain round-to-nearest bf16: most steps are lost (η < ulp(θ)/2)
    tracked, spec_theta, _ = run(compensated=False)
    _, _, bound = run(compensated=True)
    assert np.any(np.abs(tracked - spec_theta) > bound)
