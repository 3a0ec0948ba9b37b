"""Judging lionspec.impls.jax against the spec, step by step, under XLA:CPU's flush-to-zero.

XLA:CPU runs with the x86 FTZ and DAZ bits set (jax-ml/jax#16200, "working as intended"; the
``xla_cpu_ftz`` flag does not change it): a subnormal *operand* of the compute format reads as
±0, and a result that would be subnormal is flushed to ±0. lionspec's bounds assume gradual
underflow (docs/bounds.md: "flush-to-zero hardware is a declared variation"), so the judge is
given that variation explicitly (lionspec.conformance.ftz), derived, not tuned:

* DAZ: the step is judged from the inputs the implementation reads, i.e. with every value below
  the compute format's smallest normal λmin replaced by a zero of the same sign (:func:`daz`).
  XLA may also simplify an operation away (``x + (−0.0)`` is ``x``), so a subnormal operand can
  survive untouched: an element with a subnormal input passes if it conforms with the inputs
  flushed *or* as given. Formats whose subnormals are normal in float32 (float16) are not
  affected.
* FTZ: every operation rounds with ``|fl(r) − r| <= u·|r| + λmin`` instead of ``u·|r| + u·λmin``
  (a flushed result is below λmin). Every bound in lionspec.spec.bounds is written in terms of
  the format's ``underflow_error`` ε, so a :class:`FlushToZero` format with ε = λmin makes them
  the FTZ bounds. Sums that land below λmin are flushed too, an error below λmin that the bounds
  already carry through their final ``2ε`` or ``ε`` terms.
"""

from __future__ import annotations

import numpy as np

from lionspec.conformance.ftz import FTZ, FlushToZero, daz, judge_step_ftz
from lionspec.conformance.verdict import Arithmetic, StepVerdict

__all__ = ["FTZ", "FlushToZero", "arithmetic", "daz", "judge"]


def arithmetic(param: str, momentum: str, compute: str, storage_roundings: int = 1
               ) -> Arithmetic:
    """How lionspec.impls.jax computes: mul+add (FMA allowed), the bracket form
    fl(θ − fl(η·fl(s + fl(λθ)))) in ``compute`` and one rounding into the parameter dtype
    (``storage_roundings=2``, any order: for updates rounded into that dtype before the add)."""
    return Arithmetic(compute=FTZ[compute], param_storage=param, momentum_storage=momentum,
                      c_form="muladd", param_form="bracket" if storage_roundings == 1
                      else "universal", storage_roundings=storage_roundings)


def judge(algorithm: str, theta: np.ndarray, grad: np.ndarray, mu: np.ndarray,
          new_theta: np.ndarray, new_mu: np.ndarray, *, hyper: dict, param: str, momentum: str,
          compute: str, storage_roundings: int = 1) -> StepVerdict:
    """judge_step under XLA:CPU's FTZ/DAZ (:func:`lionspec.conformance.ftz.judge_step_ftz`)."""
    return judge_step_ftz(algorithm, theta, grad, mu, new_theta, new_mu, hyper=hyper,
                          arithmetic=arithmetic(param, momentum, compute, storage_roundings))
