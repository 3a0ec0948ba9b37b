"""The two evaluation backends of the per-element math: one tensor at a time, or lists of tensors.

:mod:`._math` writes each algorithm once against an ``ops`` object. :class:`TensorOps` evaluates it
on single tensors (the for-loop path, and the fused path when :mod:`._fused` compiles it);
:class:`ListOps` evaluates the *same sequence of operations* on lists of tensors with
``torch._foreach_*`` (the foreach path). Every ListOps method applies, per list element, the very
ATen operation its TensorOps twin applies, so the two paths are bit-identical by construction:
the CPU ``_foreach_*`` kernels call the per-tensor kernels, and the arithmetic ones (mul, add,
sub, div, sign, clamp, maximum, copy) compute the same correctly rounded result per element
wherever they run.

Scalars are Python floats (shared by every tensor), 0-d tensors (the fused path, and Tiger's
per-tensor learning rates) or, for ListOps, lists with one scalar per tensor.

>>> import torch
>>> xs = [torch.tensor([1.0, -2.0]), torch.tensor([0.5])]
>>> [t.tolist() for t in ListOps.mul(xs, 0.5)] == [TensorOps.mul(x, 0.5).tolist() for x in xs]
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["ListOps", "TensorOps", "double_rounds", "round_once"]

_NARROW = (torch.float16, torch.bfloat16)


def double_rounds(x: Tensor, dtype: torch.dtype) -> bool:
    """Whether torch's ``x.to(dtype)`` (or ``copy_``) would round twice: float64 -> 16 bits."""
    return x.dtype == torch.float64 and dtype in _NARROW


def round_once(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x`` rounded to nearest even into ``dtype`` with one rounding.

    torch converts float64 to float16/bfloat16 through float32, rounding twice: 1 + 2⁻⁸ + 2⁻³⁰
    becomes 1 + 2⁻⁸ in float32, a tie that rounds to 1 in bfloat16, where one rounding gives
    1 + 2⁻⁷. Rounding to *odd* into float32 first (truncate, then set the last bit if anything
    was dropped) keeps the information a second rounding needs, since float32 has at least two
    more bits than either 16-bit format, so the conversion rounds once.

    >>> t = torch.tensor([1 + 2**-8 + 2**-30], dtype=torch.float64)
    >>> t.to(torch.bfloat16).item(), round_once(t, torch.bfloat16).item()
    (1.0, 1.0078125)
    """
    if not double_rounds(x, dtype):
        return x.to(dtype)
    f = x.to(torch.float32)
    back = f.to(torch.float64)
    bits = f.view(torch.int32)
    bits = bits - (back.abs() > x.abs()).to(torch.int32)  # rounded away from zero: truncate
    bits = torch.where(back != x, bits | 1, bits)  # inexact (or NaN, harmless): make it odd
    return bits.view(torch.float32).to(dtype)


class TensorOps:
    """Operations on single tensors (eager, or traced by ``torch.compile``)."""

    @staticmethod
    def to(x: Tensor, dtype: torch.dtype) -> Tensor:
        return round_once(x, dtype)

    @staticmethod
    def neg(x: Tensor) -> Tensor:
        return torch.neg(x)

    @staticmethod
    def mul(x: Tensor, a: Any) -> Tensor:
        return torch.mul(x, a)

    @staticmethod
    def mul_(x: Tensor, a: Any) -> Tensor:
        return x.mul_(a)

    @staticmethod
    def add(x: Tensor, y: Any) -> Tensor:
        return torch.add(x, y)

    @staticmethod
    def add_(x: Tensor, y: Any) -> Tensor:
        return x.add_(y)

    @staticmethod
    def sub(x: Tensor, y: Any) -> Tensor:
        return torch.sub(x, y)

    @staticmethod
    def sub_(x: Tensor, y: Any) -> Tensor:
        return x.sub_(y)

    @staticmethod
    def sub_scaled_(x: Tensor, s: Tensor, eta: Any) -> Tensor:
        """``x − η·s`` in place for s in {−1, 0, +1, NaN} (η·s exact: one rounding)."""
        if isinstance(eta, Tensor):
            return x.sub_(s.mul_(eta))
        return x.sub_(s, alpha=eta)

    @staticmethod
    def div(x: Tensor, a: Any) -> Tensor:
        return torch.div(x, a)

    @staticmethod
    def sign(x: Tensor) -> Tensor:
        return torch.sign(x)

    @staticmethod
    def clamp_max(x: Tensor, bound: float) -> Tensor:
        return torch.clamp_max(x, bound)

    @staticmethod
    def maximum_(x: Tensor, y: Tensor) -> Tensor:
        return torch.maximum(x, y, out=x)

    @staticmethod
    def where(cond: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return torch.where(cond, x, y)

    @staticmethod
    def eq_zero(x: Tensor) -> Tensor:
        return x == 0

    @staticmethod
    def any_true(cond: Tensor) -> bool:
        return bool(cond.any())

    @staticmethod
    def norm(x: Tensor, dims: tuple[int, ...] | None) -> Tensor:
        """L2 norm of the whole tensor (``dims=None``) or over ``dims`` (kept as size-1 dims).

        Reduced in row-major order (a non-contiguous ``x`` is made contiguous first), so the
        result does not depend on the memory layout of the parameter.
        """
        x = x.contiguous()
        out = _plain_norm(x, dims)
        # The plain sum of squares is accurate (relative error <= u beyond the summation's own)
        # while S >= n·tiny; below, squares underflow (θ = 1e-300 in float64 has norm 0), and
        # past the top they overflow. Those tensors (rows) are redone scaled by a power of two,
        # which is exact, so that the largest |x| is in [0.5, 1).
        count = x.numel() if dims is None else math.prod(x.shape[d] for d in dims)
        tiny = torch.finfo(x.dtype).tiny
        redo = (out < math.sqrt(max(count, 1) * tiny)) | torch.isinf(out)
        if not bool(redo.any()):
            return out
        amax = x.abs().amax() if dims is None else x.abs().amax(dim=dims, keepdim=True)
        usable = torch.isfinite(amax) & (amax > 0)
        exponent = torch.where(usable, torch.frexp(amax).exponent, 0)
        scaled = _plain_norm(torch.ldexp(x, -exponent), dims)
        return torch.where(redo & usable, torch.ldexp(scaled, exponent), out)

    @staticmethod
    def zero_where_nonfinite_(x: Tensor, reference: Tensor) -> Tensor:
        return x.masked_fill_(~torch.isfinite(reference), 0.0)

    @staticmethod
    def store(dst: Tensor, value: Tensor) -> None:
        """Write ``value`` into ``dst`` (rounding once into ``dst``'s dtype)."""
        if value is not dst:  # copy_ converts in the same pass, except float64 -> 16 bits
            dst.copy_(round_once(value, dst.dtype) if double_rounds(value, dst.dtype) else value)


def _plain_norm(x: Tensor, dims: tuple[int, ...] | None) -> Tensor:
    if dims is None:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=dims, keepdim=True)


def _per(a: Any, n: int) -> Sequence[Any]:
    """A per-tensor list as is; anything else (a scalar, a dims tuple) repeated ``n`` times."""
    return a if isinstance(a, list) else [a] * n


class ListOps:
    """The same operations on lists of tensors, with ``torch._foreach_*`` where torch has one."""

    @staticmethod
    def to(xs: list[Tensor], dtype: torch.dtype) -> list[Tensor]:
        return [round_once(x, dtype) for x in xs]

    @staticmethod
    def neg(xs: list[Tensor]) -> list[Tensor]:
        return list(torch._foreach_neg(xs))

    @staticmethod
    def mul(xs: list[Tensor], a: Any) -> list[Tensor]:
        return list(torch._foreach_mul(xs, a))

    @staticmethod
    def mul_(xs: list[Tensor], a: Any) -> list[Tensor]:
        torch._foreach_mul_(xs, a)
        return xs

    @staticmethod
    def add(xs: list[Tensor], ys: Any) -> list[Tensor]:
        return list(torch._foreach_add(xs, ys))

    @staticmethod
    def add_(xs: list[Tensor], ys: Any) -> list[Tensor]:
        torch._foreach_add_(xs, ys)
        return xs

    @staticmethod
    def sub(xs: list[Tensor], ys: Any) -> list[Tensor]:
        return list(torch._foreach_sub(xs, ys))

    @staticmethod
    def sub_(xs: list[Tensor], ys: Any) -> list[Tensor]:
        torch._foreach_sub_(xs, ys)
        return xs

    @staticmethod
    def sub_scaled_(xs: list[Tensor], ss: list[Tensor], eta: Any) -> list[Tensor]:
        if isinstance(eta, (int, float)):
            torch._foreach_sub_(xs, ss, alpha=eta)
        else:
            torch._foreach_mul_(ss, eta)
            torch._foreach_sub_(xs, ss)
        return xs

    @staticmethod
    def div(xs: list[Tensor], a: Any) -> list[Tensor]:
        return list(torch._foreach_div(xs, a))

    @staticmethod
    def sign(xs: list[Tensor]) -> list[Tensor]:
        return list(torch._foreach_sign(xs))

    @staticmethod
    def clamp_max(xs: list[Tensor], bound: float) -> list[Tensor]:
        return list(torch._foreach_clamp_max(xs, bound))

    @staticmethod
    def maximum_(xs: list[Tensor], ys: list[Tensor]) -> list[Tensor]:
        torch._foreach_maximum_(xs, ys)
        return xs

    @staticmethod
    def where(conds: Any, xs: list[Tensor], ys: list[Tensor]) -> list[Tensor]:
        return [torch.where(c, x, y) for c, x, y in zip(_per(conds, len(xs)), xs, ys, strict=True)]

    @staticmethod
    def eq_zero(xs: list[Tensor]) -> list[Tensor]:
        return [x == 0 for x in xs]

    @staticmethod
    def any_true(conds: Any) -> bool:
        return any(bool(c.any()) for c in conds)

    @staticmethod
    def norm(xs: list[Tensor], dims: tuple[int, ...] | list[Any] | None) -> list[Tensor]:
        per = _per(dims, len(xs))
        if all(d is None for d in per):
            return list(torch._foreach_norm([x.contiguous() for x in xs]))
        return [TensorOps.norm(x, d) for x, d in zip(xs, per, strict=True)]

    @staticmethod
    def zero_where_nonfinite_(xs: list[Tensor], references: list[Tensor]) -> list[Tensor]:
        for x, r in zip(xs, references, strict=True):
            TensorOps.zero_where_nonfinite_(x, r)
        return xs

    @staticmethod
    def store(dsts: list[Tensor], values: list[Tensor]) -> None:
        pairs = [(d, round_once(v, d.dtype) if double_rounds(v, d.dtype) else v)
                 for d, v in zip(dsts, values, strict=True) if v is not d]
        if pairs:
            torch._foreach_copy_([d for d, _ in pairs], [v for _, v in pairs])
