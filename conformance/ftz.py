"""Judging under flush-to-zero: a declared variation of the arithmetic (``Profile(ftz=True)``).

Some platforms run with the x86 FTZ and DAZ bits set — XLA:CPU does (jax-ml/jax#16200, "working
as intended"): a subnormal *operand* of the compute format reads as ±0, and a result that would
be subnormal is flushed to ±0. lionspec's bounds assume gradual underflow, so FTZ is judged
explicitly, derived and not tuned:

* DAZ: the step is judged from the inputs the implementation reads, every value below the compute
  format's smallest normal λmin replaced by a zero of the same sign (:func:`daz`). A compiler may
  also simplify an operation away (``x + (−0.0)`` is ``x``), so a subnormal operand can survive:
  an element with a subnormal input passes if it conforms with the inputs flushed *or* as given.
  Formats whose subnormals are normal in float32 (float16) are not affected.
* FTZ: every operation rounds with ``|fl(r) − r| <= u·|r| + λmin`` instead of ``u·|r| + u·λmin``,
  and so does a float64 result stored into float32 (the conversion flushes too).
  Every bound in :mod:`lionspec.spec.bounds` is written in terms of the format's underflow error
  ε, so a :class:`FlushToZero` format with ε = λmin turns them into the FTZ bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lionspec.spec.formats import Format

from .verdict import FAILURE, Arithmetic, StepVerdict, judge_step

__all__ = ["FTZ", "FlushToZero", "daz", "judge_step_ftz"]


@dataclass(frozen=True)
class FlushToZero(Format):
    """A compute format whose results below λmin are flushed to zero: ε = λmin."""

    @property
    def underflow_error(self) -> float:
        return self.tiny


#: The flush-to-zero twins of the compute formats. bfloat16 arithmetic runs in float32 units,
#: so its subnormals (float32's) are flushed as well; float16's subnormals are normal float32
#: numbers, so float16 is not affected (judged as usual).
FTZ = {"float32": FlushToZero("float32+ftz", 24, -126, 127),
       "float64": FlushToZero("float64+ftz", 53, -1022, 1023),
       "bfloat16": FlushToZero("bfloat16+ftz", 8, -126, 127)}


def daz(x: np.ndarray, compute: str) -> np.ndarray:
    """The values an operand-flushing (DAZ) unit reads: |x| < λmin becomes ±0."""
    tiny = FTZ[compute].tiny
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(x) < tiny, np.copysign(0.0, x), x)


def judge_step_ftz(algorithm: str, theta: Any, grad: Any, exp_avg: Any, new_theta: Any,
                   new_exp_avg: Any, *, hyper: dict[str, Any], arithmetic: Arithmetic,
                   variation: str = "canonical") -> StepVerdict:
    """:func:`~.verdict.judge_step` under FTZ/DAZ: from the DAZ-read inputs with the FTZ format;
    an element with a subnormal input may instead conform with its inputs as given."""
    compute = arithmetic.compute if isinstance(arithmetic.compute, str) else \
        arithmetic.compute.name.removesuffix("+ftz")
    if compute not in FTZ:  # float16: no subnormal of it is subnormal in float32
        return judge_step(algorithm, theta, grad, exp_avg, new_theta, new_exp_avg, hyper=hyper,
                          arithmetic=arithmetic, variation=variation)
    # a float64 result stored as float32 converts under FTZ too (cvtsd2ss flushes)
    storage = {k: FTZ[v] for k, v in (("param_storage", arithmetic.param_dtype),
                                       ("momentum_storage", arithmetic.momentum_dtype))
               if isinstance(v, str) and v in FTZ and v != compute}
    a = replace(arithmetic, compute=FTZ[compute], **storage)
    raw = [np.asarray(x, dtype=np.float64) for x in (theta, grad, exp_avg)]
    read = [daz(x, compute) for x in raw]
    v = judge_step(algorithm, *read, new_theta, new_exp_avg, hyper=hyper, arithmetic=a,
                   variation=variation)
    changed = np.zeros(raw[0].shape, dtype=bool)
    for x, y in zip(raw, read, strict=True):
        changed |= x.view(np.uint64) != y.view(np.uint64)
    if v.ok or not changed.any():
        return v
    w = judge_step(algorithm, *raw, new_theta, new_exp_avg, hyper=hyper, arithmetic=a,
                   variation=variation)
    param = np.where(changed & (w.param != FAILURE), w.param, v.param)
    exp_avg = np.where(changed & (w.exp_avg != FAILURE), w.exp_avg, v.exp_avg)
    merged = StepVerdict(algorithm, param, exp_avg, [])
    return merged if merged.ok else StepVerdict(algorithm, param, exp_avg,
                                                [*v.lines, "(inputs as given:)", *w.lines])
