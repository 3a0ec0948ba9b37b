"""The per-element math of Lion, SIGNUM and Tiger, written once for all three code paths.

Each algorithm is a function of ``(theta, grad, exp_avg, comp)`` and the hyperparameters that
returns an :class:`Update` (``None`` fields mean "leave that tensor untouched, bit for bit"). It
never writes into ``theta``, ``grad`` or ``comp``; the caller stores the results, rounding once
into each tensor's dtype. One exception, for speed: Lion forms its new momentum in place, in
``exp_avg`` itself when that is in the compute dtype (the returned value is then ``exp_avg`` and
the store is a no-op), so it saves a temporary and a copy; the arithmetic is unchanged.
The functions take an ``ops`` backend (:mod:`._ops`):

* the for-loop path calls them with :class:`~._ops.TensorOps` and Python floats;
* the foreach path calls them with :class:`~._ops.ListOps` on lists of tensors (same operations in
  the same order, hence bit-identical results);
* the fused path compiles them with ``torch.compile`` (:mod:`._fused`), hyperparameters passed as
  0-d tensors so that changing them never recompiles.

Compute precision ``C``: float32, or float64 when the parameter or its momentum is float64. Inputs
are converted to ``C`` exactly (upcasts), so with ``fl`` = round to nearest in ``C``:

* interpolation and momentum (mul+add, ``w = 1 − β`` formed in float64 by the caller)::

      c = fl(fl(β·m) + fl(w·g))          # the β·m term is absent when β == 0: c = fl(w·g)

* sign with NaN propagated (``torch.sign(NaN)`` is 0 on CPU; this is not)::

      sign_nan(c) = max(sign(c), min(c, −1))   # NaN -> NaN, ±Inf -> ±1, ±0 -> 0

* parameter update with decoupled decay, ``keep = 1 − η·λ``::

      θ' = fl(fl(θ·keep) − η·s)           # η·s is exact for s in {−1, 0, +1}
      θ' = fl(θ − η·s)                    # keep == 1 (λ == 0): the product by 1 is skipped
      θ' = −η·s                           # keep == 0: the θ term is absent
      θ' = θ                              # η == 0: untouched, even for a NaN s

  then one rounding into the parameter's dtype when the caller stores it.

Example (Lion, one fp32 step; the NaN gradient element stays NaN, the zero one only decays)::

    >>> import torch
    >>> from lionspec.impls.torch._ops import TensorOps
    >>> p = torch.tensor([1.0, 1.0, 1.0]); g = torch.tensor([2.0, float("nan"), 0.0])
    >>> u = lion(TensorOps, p, g, torch.zeros(3), None, lr=0.5, beta1=0.9, w1=0.1, beta2=0.99,
    ...          w2=0.01, keep=0.95, lr_zero=False, beta1_zero=False, beta2_zero=False,
    ...          keep_zero=False, keep_one=False, maximize=False, compute=torch.float32,
    ...          storage=torch.float32)
    >>> u.theta.tolist()[0], u.theta.isnan().tolist(), u.theta.tolist()[2]
    (0.44999998807907104, [False, True, False], 0.949999988079071)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lionspec.spec._validate import SHRINK_CENTRE

from ._ops import TensorOps

__all__ = [
    "ALGORITHMS",
    "Update",
    "compute_dtype",
    "lion",
    "master_rms",
    "nan_flag",
    "rms",
    "sign_nan",
    "signum",
    "tiger",
]

#: A zero-coefficient test: a Python bool (eager paths branch on it), a bool tensor (the fused
#: path selects elementwise with ``torch.where``) or, for ListOps, a list of bool tensors.
Cond = Any


class Update(NamedTuple):
    """New values for one step; ``None`` leaves that tensor untouched."""

    theta: Any
    exp_avg: Any
    comp: Any


def compute_dtype(param_dtype: torch.dtype, momentum_dtype: torch.dtype) -> torch.dtype:
    """float64 if the parameter or its momentum is float64, else float32.

    >>> compute_dtype(torch.bfloat16, torch.float32), compute_dtype(torch.float32, torch.float64)
    (torch.float32, torch.float64)
    """
    if torch.float64 in (param_dtype, momentum_dtype):
        return torch.float64
    return torch.float32


def nan_flag(grad: Tensor, nan_check: str) -> Tensor:
    """0-d bool tensor: does ``grad`` hold a NaN (``"nan"``) or any non-finite value?

    Written as comparisons (``g != g``; ``not |g| < inf``), which inductor vectorises (its
    ``isnan``/``isfinite`` run element by element on CPU).
    """
    if nan_check == "nan":
        return torch.ne(grad, grad).any()
    return torch.logical_not(torch.lt(torch.abs(grad), float("inf")).all())


def _select(ops: Any, cond: Cond, if_true: Callable[[], Any], if_false: Callable[[], Any]) -> Any:
    """``if_true()`` where ``cond`` holds, else ``if_false()``: a Python branch for a bool, an
    elementwise ``where`` for a tensor condition (both sides are then evaluated; they must not
    write into shared temporaries)."""
    if cond is True:
        return if_true()
    if cond is False:
        return if_false()
    return ops.where(cond, if_true(), if_false())


def _untouched_if(ops: Any, cond: Cond, old: Any, new: Any) -> Any:
    """``new``, except where ``cond`` holds: there the stored ``old`` (``None``: all untouched).

    An eager caller with an all-false tensor condition skips the (identity) ``where``.
    """
    if cond is False or new is None:
        return new
    if cond is True:
        return None
    if not torch.compiler.is_compiling() and not ops.any_true(cond):
        return new
    return ops.where(cond, old, new)


def _gradient(ops: Any, grad: Any, compute: torch.dtype, maximize: bool) -> Any:
    g = ops.to(grad, compute)
    return ops.neg(g) if maximize else g


def _ema(ops: Any, m: Any, g: Any, beta: Any, w: Any, beta_zero: Cond, decay: bool = True,
         last_use: bool = False) -> Any:
    """``fl(fl(β·m) + fl(w·g))``; ``fl(m + fl(w·g))`` without decay; ``fl(w·g)`` if β == 0.

    ``last_use``: ``m`` is not read again and may be overwritten (it may be the stored momentum
    itself: the result then *is* that tensor, and the store is skipped). Same arithmetic.
    """
    gw = ops.mul(g, w)
    if not decay:
        return ops.add_(gw, m)
    if last_use:
        return _select(ops, beta_zero, lambda: gw, lambda: ops.add_(ops.mul_(m, beta), gw))
    return _select(ops, beta_zero, lambda: gw, lambda: ops.add_(ops.mul(m, beta), gw))


def sign_nan(ops: Any, c: Any) -> Any:
    """sign(c) with NaN propagated: ``max(sign(c), min(c, −1))`` (torch.maximum and clamp
    propagate NaN; for non-NaN c, ``min(c, −1) <= −1 <= sign(c)``)."""
    return ops.maximum_(ops.sign(c), ops.clamp_max(c, -1.0))


def _master(ops: Any, theta: Any, comp: Any, compute: torch.dtype) -> Any:
    """θ in compute precision; with a compensation buffer, ``θ + comp`` (the tracked value)."""
    x = ops.to(theta, compute)
    return x if comp is None else ops.add(x, ops.to(comp, compute))


def _one_minus(ops: Any, a: Any) -> Any:
    """``fl(1 − a)``, one rounding (negation is exact)."""
    return ops.add_(ops.neg(a), 1.0)


def _decoupled(ops: Any, x: Any, s: Any, eta: Any, keep: Any, keep_one: bool,
               keep_zero: Cond, own_x: bool = False) -> Any:
    """``fl(fl(x·keep) − η·s)``; ``fl(x − η·s)`` when keep is exactly 1; ``−η·s`` when it is 0.

    ``own_x``: ``x`` is not read again and may be overwritten (it may be the stored θ itself,
    which then *is* the result). Same arithmetic: ``x − η·s`` with a Python-number η is
    ``sub_(s, alpha=η)``, whose product is exact for s in {−1, 0, +1, NaN}, so fused
    multiply-add or not, it is the one rounding of ``x − η·s``.
    """
    if own_x and keep_zero is False:
        if not keep_one:
            ops.mul_(x, keep)
        return ops.sub_scaled_(x, s, eta)
    step = ops.mul_(s, eta)  # s is a temporary
    if keep_one:
        return ops.sub(x, step)
    return _select(ops, keep_zero, lambda: ops.neg(step),
                   lambda: ops.sub_(ops.mul(x, keep), step))


def _split(ops: Any, new: Any, comp: Any, compute: torch.dtype,
           storage: torch.dtype) -> tuple[Any, Any]:
    """Without compensation: ``(new, None)`` (the store rounds once). With it: the pair
    ``hi = RN(new)``, ``lo = RN(new − hi)`` in the storage dtype (``new − hi`` is exact in ``C``);
    ``lo`` is 0 where ``hi`` is not finite so that an overflow does not turn into NaN."""
    if comp is None:
        return new, None
    hi = ops.to(new, storage)
    lo = ops.sub(new, ops.to(hi, compute))
    ops.zero_where_nonfinite_(lo, hi)
    return hi, ops.to(lo, storage)


def _move(ops: Any, theta: Any, comp: Any, s: Any, *, eta: Any, keep: Any, keep_one: bool,
          keep_zero: Cond, lr_zero: Cond, compute: torch.dtype,
          storage: torch.dtype) -> tuple[Any, Any]:
    x = _master(ops, theta, comp, compute)
    # eager (lr_zero a Python bool): nothing reads the old θ again, so x (θ itself, or a
    # temporary) is updated in place
    new = _decoupled(ops, x, s, eta, keep, keep_one, keep_zero, own_x=lr_zero is False)
    hi, lo = _split(ops, new, comp, compute, storage)
    return _untouched_if(ops, lr_zero, theta, hi), _untouched_if(ops, lr_zero, comp, lo)


def lion(ops: Any, theta: Any, grad: Any, exp_avg: Any, comp: Any, *, lr: Any, beta1: Any,
         w1: Any, beta2: Any, w2: Any, keep: Any, lr_zero: Cond, beta1_zero: Cond,
         beta2_zero: Cond, keep_zero: Cond, keep_one: bool, maximize: bool,
         compute: torch.dtype, storage: torch.dtype) -> Update:
    """Lion: ``c = β1·m + w1·g``; ``θ' = θ·keep − η·sign(c)``; then ``m' = β2·m + w2·g``.

    ``w1 = 1 − β1``, ``w2 = 1 − β2`` and ``keep = 1 − η·λ`` are formed in float64 by the caller;
    ``*_zero`` say which coefficient is exactly 0 (its term is absent), ``keep_one`` that keep is
    exactly 1 (the product by 1 is skipped; exact either way).
    """
    g = _gradient(ops, grad, compute, maximize)
    m = ops.to(exp_avg, compute)
    theta_new = comp_new = None
    if lr_zero is not True:
        s = sign_nan(ops, _ema(ops, m, g, beta1, w1, beta1_zero))
        theta_new, comp_new = _move(ops, theta, comp, s, eta=lr, keep=keep, keep_one=keep_one,
                                    keep_zero=keep_zero, lr_zero=lr_zero, compute=compute,
                                    storage=storage)
    # m's last use: β2·m is formed in place (in the momentum buffer itself when its dtype is the
    # compute dtype), saving a temporary and the store's copy
    return Update(theta_new, _ema(ops, m, g, beta2, w2, beta2_zero, last_use=True), comp_new)


def signum(ops: Any, theta: Any, grad: Any, exp_avg: Any, comp: Any, *, lr: Any, beta: Any,
           w: Any, keep: Any, lr_zero: Cond, beta_zero: Cond, keep_zero: Cond, keep_one: bool,
           maximize: bool, compute: torch.dtype, storage: torch.dtype) -> Update:
    """SIGNUM: ``m' = β·m + w·g`` first, then ``θ' = θ·keep − η·sign(m')``.

    The sign is taken of ``m'`` in compute precision, before it is rounded into the momentum dtype.
    """
    g = _gradient(ops, grad, compute, maximize)
    m_new = _ema(ops, ops.to(exp_avg, compute), g, beta, w, beta_zero)
    theta_new = comp_new = None
    if lr_zero is not True:
        theta_new, comp_new = _move(ops, theta, comp, sign_nan(ops, m_new), eta=lr, keep=keep,
                                    keep_one=keep_one, keep_zero=keep_zero, lr_zero=lr_zero,
                                    compute=compute, storage=storage)
    return Update(theta_new, m_new, comp_new)


def _shrink(ops: Any, x: Any, ratio: Any, centre: int) -> Any:
    """Tiger's NaN rule ``(θ − c)·s + c``: ``fl(θ·s)`` for c = 0, ``fl(fl(fl(θ − 1)·s) + 1)``."""
    if centre == 0:
        return ops.mul(x, ratio)
    return ops.add_(ops.mul_(ops.sub(x, float(centre)), ratio), float(centre))


def rms(ops: Any, x: Any, dims: Any, divisor: Any) -> Any:
    """``fl(‖x‖₂ / fl(√n))``: torch's vector norm in compute precision over the whole tensor
    (``dims=None``) or per row (``dims``, kept as size-1 dims), divided by ``divisor = √n``."""
    return ops.div(ops.norm(x, dims), divisor)


def master_rms(theta: Tensor, comp: Tensor | None, compute: torch.dtype, dims: Any,
               divisor: Any) -> Tensor:
    """:func:`rms` of the tracked θ (``θ + comp``) of one tensor, eagerly (see ``tiger``)."""
    return rms(TensorOps, _master(TensorOps, theta, comp, compute), dims, divisor)


def _tiger_lr(ops: Any, x: Any, *, role: str, lr: Any, weight_decay: Any, decay_zero: Cond,
              rms_dims: Any, rms_divisor: Any, given_rms: Any) -> tuple[Any, Any, bool, Cond]:
    """(η, keep, keep_one, η == 0) for Tiger's roles. ``lr`` is already α/2 for bias and scale.

    weight / embedding: ``η = fl(rms·α)`` (:func:`rms`, or ``given_rms`` when the caller computed
    it), ``keep = fl(1 − fl(η·λ))``.
    """
    if role in ("bias", "scale"):
        return lr, 1.0, True, False
    r = rms(ops, x, rms_dims, rms_divisor) if given_rms is None else given_rms
    eta = ops.mul(r, lr)
    if decay_zero is True:
        return eta, 1.0, True, ops.eq_zero(eta)
    keep = _one_minus(ops, ops.mul(eta, weight_decay))
    if decay_zero is not False:  # fused path: λ == 0 as a tensor
        keep = ops.where(decay_zero, 1.0, keep)
    return eta, keep, False, ops.eq_zero(eta)


def tiger(ops: Any, theta: Any, grad: Any, exp_avg: Any, comp: Any, *, lr: Any, lr_zero: Cond,
          beta: Any, w: Any, beta_zero: Cond, weight_decay: Any, decay_zero: Cond,
          shrink_ratio: Any, rms_divisor: Any, role: str, first: bool, last: bool, nan: Any,
          nan_check: str, rms_dims: Any, maximize: bool, compute: torch.dtype,
          storage: torch.dtype, given_rms: Any = None) -> Update:
    """One Tiger micro-step.

    ``first``/``last``: the micro-step opens / closes an accumulation window (t mod k == 0,
    (t + 1) mod k == 0). ``w = (1 − β)/k`` (float64, by the caller). ``nan``: the NaN rule's flag
    (a bool, a bool tensor, or ``None`` to compute it here from ``grad`` with ``nan_check``).
    ``given_rms``: the RMS if the caller already computed it (:func:`master_rms`; the fused path
    does, so that its kernel stays elementwise), else it is computed here.

    * NaN flag set: ``m`` untouched, ``θ ← (θ − centre)·s + centre`` (centre 1 for scale).
    * else ``m' = fl(fl(β·m) + fl(w·g))`` at a window's first micro-step, ``fl(m + fl(w·g))``
      otherwise; on the last micro-step ``θ' = fl(fl(θ·keep) − η·sign(m'))`` with η, keep from
      the role (:func:`_tiger_lr`); θ is untouched on the other micro-steps and where η == 0.
    """
    x = _master(ops, theta, comp, compute) if (last or nan is not False) else None
    shrunk = (None, None)
    if nan is None:
        nan = nan_flag(grad, nan_check)
    if nan is not False:
        shrunk = _split(ops, _shrink(ops, x, shrink_ratio, SHRINK_CENTRE[role]), comp, compute,
                        storage)
        if nan is True:
            return Update(shrunk[0], None, shrunk[1])
    m = ops.to(exp_avg, compute)
    m_new = _ema(ops, m, _gradient(ops, grad, compute, maximize), beta, w, beta_zero,
                 decay=first)
    theta_new = comp_new = None
    if last and lr_zero is not True:
        eta, keep, keep_one, eta_zero = _tiger_lr(ops, x, role=role, lr=lr,
                                                  weight_decay=weight_decay,
                                                  decay_zero=decay_zero, rms_dims=rms_dims,
                                                  rms_divisor=rms_divisor, given_rms=given_rms)
        hi, lo = _split(ops, _decoupled(ops, x, sign_nan(ops, m_new), eta, keep, keep_one,
                                        False), comp, compute, storage)
        theta_new = _untouched_if(ops, eta_zero, theta, hi)
        comp_new = _untouched_if(ops, eta_zero, comp, lo)
        theta_new = _untouched_if(ops, lr_zero, theta, theta_new)
        comp_new = _untouched_if(ops, lr_zero, comp, comp_new)
    if nan is not False:  # a tensor flag (fused path): the NaN rule wins where it is set
        theta_new = ops.where(nan, shrunk[0], theta if theta_new is None else theta_new)
        if comp is not None:
            comp_new = ops.where(nan, shrunk[1], comp if comp_new is None else comp_new)
        m_new = ops.where(nan, m, m_new)
    return Update(theta_new, m_new, comp_new)


#: The math of each algorithm by name.
ALGORITHMS: dict[str, Callable[..., Update]] = {"lion": lion, "signum": signum, "tiger": tiger}
