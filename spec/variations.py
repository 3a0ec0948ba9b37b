"""Named variations of the spec that real code implements, for the conformance suite to diagnose.

Each :class:`Variation` is a complete, exact step function (same arithmetic engine as the canonical
oracle) plus where the behaviour is found in the wild, so that a deviating implementation can be
reported as, e.g., "consistent with coupled L2 weight decay" instead of just "wrong".

>>> sorted(VARIATIONS)[:3]
['canonical', 'decay:coupled', 'decay:lr_independent']
>>> p, m = VARIATIONS["decay:coupled"].step("lion", [1.0], [0.0], [0.0], lr=0.1, weight_decay=0.5)
>>> p.tolist()  # coupled: sign(c) = sign(0.1·0.5·1) = +1 moves θ; no separate decay
[0.9]

Multi-tensor helpers live here too: :func:`step_tensors` (one step over a list of tensors, with a
global NaN flag when asked) and :func:`trajectory` (many steps), and :func:`lion_accumulated_step`
(Lion on the mean of k micro-gradients, what summed ``.grad`` or optax.MultiSteps produce).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from . import _validate as v
from ._accurate import Coef, Term, sum_of_products
from ._common import CANONICAL, Conventions, direction, exact, keep_factor, param_update
from .lion import _inputs, _lion
from .signum import _signum
from .tiger import NAN_CHECKS, _nan_flag, _tiger

__all__ = [
    "ALGORITHMS",
    "NAN_POLICIES",
    "VARIATIONS",
    "Variation",
    "lion_accumulated_step",
    "step_tensors",
    "trajectory",
]

ALGORITHMS = ("lion", "signum", "tiger")

#: NaN policies. ``propagate``: IEEE, elementwise (Lion/SIGNUM canonical). ``freeze``: sign(NaN) = 0
#: as torch.sign does on CPU, so a NaN element only decays while its momentum is NaN forever.
#: ``skip``: a tensor whose gradient has a NaN keeps θ and m (as an AMP grad scaler skips a step).
#: ``shrink``: Tiger's rule, m kept and θ ← (θ − c)·s + c (Tiger canonical).
NAN_POLICIES = ("propagate", "freeze", "skip", "shrink")


def _dispatch(algorithm: str, theta: np.ndarray, g: np.ndarray, m: np.ndarray, *,
              conv: Conventions, nan_policy: str, nan_check: str, nan_flag: bool | None,
              hyper: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if nan_check not in NAN_CHECKS:
        raise ValueError(f"nan_check must be one of {NAN_CHECKS}, got {nan_check!r}")
    if nan_policy == "freeze":
        conv = Conventions(conv.decay, conv.lr_max, conv.sign_zero, 0.0)
    if algorithm == "tiger":
        if nan_policy == "shrink":
            return _tiger(theta, g, m, conv=conv, nan_flag=nan_flag, nan_check=nan_check, **hyper)
        flagged = _nan_flag(g, nan_check) if nan_flag is None else nan_flag
        if nan_policy == "skip" and flagged:
            return theta.copy(), m.copy()
        return _tiger(theta, g, m, conv=conv, nan_flag=False, **hyper)
    if nan_policy == "shrink":
        raise ValueError("nan_policy='shrink' is Tiger's rule; use 'skip' for Lion or SIGNUM")
    if nan_policy == "skip":
        flagged = _nan_flag(g, nan_check) if nan_flag is None else nan_flag
        if flagged:
            return theta.copy(), m.copy()
    step = _lion if algorithm == "lion" else _signum
    hyper = {k: val for k, val in hyper.items() if k != "step"}
    return step(theta, g, m, conv=conv, **hyper)


_DEFAULTS: dict[str, dict[str, Any]] = {
    "lion": {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0},
    "signum": {"beta": 0.9, "weight_decay": 0.0},
    "tiger": {"beta": 0.965, "weight_decay": 0.01, "accumulation_steps": 1, "role": "weight",
              "shrink_ratio": 0.99, "step": 0},
}


def _hyper(algorithm: str, given: dict[str, Any]) -> dict[str, Any]:
    if "lr" not in given:
        raise ValueError("lr is required")
    allowed = {"lr", *_DEFAULTS[algorithm]}
    unknown = set(given) - allowed
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) for {algorithm}: {sorted(unknown)}; "
                         f"allowed: {sorted(allowed)}")
    return {**_DEFAULTS[algorithm], **given}


def _default_nan_policy(algorithm: str) -> str:
    return "shrink" if algorithm == "tiger" else "propagate"


@dataclass(frozen=True)
class Variation:
    """A named deviation from the canonical spec that real implementations exhibit.

    ``algorithms`` lists where it applies; ``found`` says, in general terms, where it is seen.
    """

    name: str
    summary: str
    found: str
    algorithms: tuple[str, ...] = ALGORITHMS
    conventions: Conventions = field(default=CANONICAL)
    nan_policy: str | None = None  # None: the algorithm's canonical policy
    nan_check: str = "nan"
    nan_scope: str = "tensor"
    lr_max_required: bool = False

    def step(self, algorithm: str, param: Any, grad: Any, exp_avg: Any, *,
             lr_max: float | None = None, **hyper: Any) -> tuple[np.ndarray, np.ndarray]:
        """One step of ``algorithm`` under this variation (single tensor)."""
        if algorithm not in self.algorithms:
            raise ValueError(f"variation {self.name!r} does not apply to {algorithm!r}")
        theta, g, m = _inputs(param, grad, exp_avg)
        conv = self.conventions
        if self.lr_max_required:
            conv = Conventions(conv.decay, lr_max if lr_max is not None else hyper.get("lr"),
                               conv.sign_zero, conv.sign_nan)
        policy = self.nan_policy or _default_nan_policy(algorithm)
        return _dispatch(algorithm, theta, g, m, conv=conv, nan_policy=policy,
                         nan_check=self.nan_check, nan_flag=None,
                         hyper=_hyper(algorithm, hyper))


def _registry(*items: Variation) -> dict[str, Variation]:
    return {item.name: item for item in items}


_LIKE_SIGNUM = ("lion", "signum", "tiger")

#: Every named variation. The canonical spec is ``VARIATIONS["canonical"]``.
VARIATIONS: dict[str, Variation] = _registry(
    Variation("canonical", "the spec: decoupled decay in one expression, sign(0) = 0, NaN per the "
              "algorithm (Lion/SIGNUM propagate elementwise, Tiger shrinks per tensor)",
              "the reference definitions"),
    Variation("decay:coupled", "L2 decay: g ← g + λθ before c and m are formed; θ gets no "
              "separate decay", "optimizers that reuse an SGD/Adam-style weight-decay option; "
              "shipped by a major library until 2026",
              conventions=Conventions(decay="coupled")),
    Variation("decay:lr_independent", "θ ← θ·(1 − λ·η/η_max): decay follows only the schedule's "
              "shape (a.k.a. fully decoupled); η_max defaults to the step's lr",
              "libraries offering 'fully decoupled' or 'lr-independent' weight decay",
              conventions=Conventions(decay="lr_independent", lr_max=1.0),
              lr_max_required=True),
    Variation("decay:unscaled", "θ ← θ·(1 − λ): decay not multiplied by the learning rate",
              "hand-written training loops and some ports from frameworks that scale decay "
              "elsewhere", conventions=Conventions(decay="unscaled")),
    Variation("sign0:+1", "sign(0) taken as +1 (a zero decision variable moves θ down by η)",
              "kernels written as where(c >= 0, -lr, lr) or copysign(1, c) for +0",
              conventions=Conventions(sign_zero=1.0)),
    Variation("sign0:-1", "sign(0) taken as −1 (a zero decision variable moves θ up by η)",
              "kernels written as where(c > 0, -lr, lr)",
              conventions=Conventions(sign_zero=-1.0)),
    Variation("nan:where", "sign(NaN) taken as −1 and sign(0) as −1: a NaN-gradient element moves "
              "θ by +η every step instead of becoming NaN",
              "fused GPU kernels that select the update with where(c > 0, ...)",
              conventions=Conventions(sign_zero=-1.0, sign_nan=-1.0)),
    Variation("nan:freeze", "sign(NaN) = 0: a NaN element of θ only decays, its momentum is NaN "
              "forever, the NaN never reaches θ", "eager PyTorch code on CPU that calls "
              "torch.sign (sign(NaN) is 0 there)", nan_policy="freeze"),
    Variation("nan:skip-tensor", "a tensor whose gradient has a NaN keeps θ and m for this step",
              "per-tensor finite checks in optimizer loops", nan_policy="skip"),
    Variation("nan:skip-tensor-nonfinite", "as nan:skip-tensor, also for ±Inf",
              "per-tensor isfinite checks", nan_policy="skip", nan_check="nonfinite"),
    Variation("nan:skip-global", "one NaN anywhere skips the step for every tensor (θ and m kept)",
              "mixed-precision loss scalers that skip the whole optimizer step",
              nan_policy="skip", nan_check="nonfinite", nan_scope="global"),
    Variation("nan:propagate", "no NaN rule: IEEE propagation elementwise",
              "Tiger ports that drop the original's NaN rule", algorithms=("tiger",),
              nan_policy="propagate"),
    Variation("nan:shrink-nonfinite", "Tiger's shrink rule triggered by ±Inf as well as NaN",
              "Tiger implementations that test isfinite instead of isnan", algorithms=("tiger",),
              nan_check="nonfinite"),
    Variation("nan:shrink-global", "Tiger's shrink rule with one flag for the whole model: every "
              "tensor shrinks when any gradient has a NaN", "Tiger implementations with a global "
              "NaN flag (under sharding this needs an all-reduce)", algorithms=("tiger",),
              nan_scope="global"),
)


def step_tensors(algorithm: str, params: Sequence[Any], grads: Sequence[Any],
                 exp_avgs: Sequence[Any], *, variation: str = "canonical",
                 roles: Sequence[str] | None = None, lr_max: float | None = None,
                 **hyper: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One step over several tensors, honouring a variation's NaN scope (``nan:*-global``).

    ``roles`` gives Tiger's role per tensor (default "weight"). Returns lists of new arrays.

    >>> ps, ms = step_tensors("tiger", [[1.0], [2.0]], [[float("nan")], [0.5]], [[0.0], [0.0]],
    ...                       variation="nan:shrink-global", lr=0.1)
    >>> [p.tolist() for p in ps]
    [[0.99], [1.98]]
    """
    if variation not in VARIATIONS:
        raise ValueError(f"variation must be one of {sorted(VARIATIONS)}, got {variation!r}")
    var = VARIATIONS[variation]
    if not len(params) == len(grads) == len(exp_avgs):
        raise ValueError("params, grads and exp_avgs must have the same length, got "
                         f"{len(params)}, {len(grads)}, {len(exp_avgs)}")
    if roles is not None and len(roles) != len(params):
        raise ValueError(f"roles must have one entry per tensor ({len(params)}), got {len(roles)}")
    if roles is not None and algorithm != "tiger":
        raise ValueError("roles apply to algorithm='tiger' only")
    if var.nan_scope != "global":
        out = [var.step(algorithm, p, g, m, lr_max=lr_max,
                        **({**hyper, "role": roles[i]} if roles is not None else hyper))
               for i, (p, g, m) in enumerate(zip(params, grads, exp_avgs, strict=True))]
        return [o[0] for o in out], [o[1] for o in out]
    triples = [_inputs(p, g, m) for p, g, m in zip(params, grads, exp_avgs, strict=True)]
    flag = any(_nan_flag(g, var.nan_check) for _, g, _ in triples)
    conv = var.conventions
    if var.lr_max_required:  # pragma: no cover - no global variation needs lr_max today
        conv = Conventions(conv.decay, lr_max or hyper.get("lr"), conv.sign_zero, conv.sign_nan)
    policy = var.nan_policy or _default_nan_policy(algorithm)
    new_p, new_m = [], []
    for i, (theta, g, m) in enumerate(triples):
        h = _hyper(algorithm, {**hyper, "role": roles[i]} if roles is not None else hyper)
        p1, m1 = _dispatch(algorithm, theta, g, m, conv=conv, nan_policy=policy,
                           nan_check=var.nan_check, nan_flag=flag, hyper=h)
        new_p.append(p1)
        new_m.append(m1)
    return new_p, new_m


def lion_accumulated_step(param: Any, grads: Sequence[Any], exp_avg: Any, *, lr: float,
                          beta1: float = 0.9, beta2: float = 0.99,
                          weight_decay: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Lion on the exact mean of k micro-gradients (k = ``len(grads)``).

    Lion cannot accumulate in its momentum as Tiger does (its update needs g and the old m
    separately), so "Lion with k-step accumulation" is defined as Lion on mean(g_1..g_k) — what
    optax.MultiSteps or a training loop that sums ``.grad`` over micro-batches produce. The mean is
    not rounded first: c = β1·m + ((1 − β1)/k)·Σ g_i exactly.

    >>> p, m = lion_accumulated_step([1.0], [[1.0], [-3.0]], [0.0], lr=0.5)
    >>> p.tolist()
    [1.5]
    """
    if len(grads) < 1:
        raise ValueError("grads must hold at least one micro-gradient")
    theta = v.as_float64(param, "param")
    m = v.as_float64(exp_avg, "exp_avg")
    gs = [v.as_float64(g, f"grads[{i}]") for i, g in enumerate(grads)]
    v.check_same_shape(theta, exp_avg=m, **{f"grads[{i}]": g for i, g in enumerate(gs)})
    eta = exact(v.check_lr(lr))
    b1 = exact(v.check_beta(beta1, "beta1"))
    b2 = exact(v.check_beta(beta2, "beta2"))
    lam = exact(v.check_weight_decay(weight_decay))
    k = len(gs)

    def ema(beta: Fraction) -> list[Term]:
        return [Term(Coef.of(beta), m)] + [Term(Coef.of((1 - beta) / k), g) for g in gs]

    _, c_sign = sum_of_products(ema(b1), theta.shape)
    new_theta = param_update(theta, direction(c_sign, CANONICAL), Coef.of(eta),
                             Coef.of(keep_factor(eta, lam, CANONICAL)))
    new_m, _ = sum_of_products(ema(b2), theta.shape)
    return new_theta, new_m


def trajectory(algorithm: str, param: Any, grads: Iterable[Any], exp_avg: Any = None, *,
               lr: float | Callable[[int], float], variation: str = "canonical",
               **hyper: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Run many steps of ``algorithm`` on one tensor; yields ``(param, exp_avg)`` after each.

    ``lr`` may be a schedule ``lr(t)`` indexed by the 0-based (micro-)step t, as in the Tiger
    original. ``exp_avg`` defaults to zeros. Tiger's ``step`` counter is supplied automatically.

    >>> states = list(trajectory("lion", [0.5], [[1.0]] * 3, lr=0.1))
    >>> [s[0].tolist() for s in states]
    [[0.4], [0.30000000000000004], [0.20000000000000004]]
    """
    if variation not in VARIATIONS:
        raise ValueError(f"variation must be one of {sorted(VARIATIONS)}, got {variation!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if "step" in hyper:
        raise ValueError("step is supplied by trajectory(); do not pass it")
    theta = v.as_float64(param, "param")
    m = np.zeros_like(theta) if exp_avg is None else v.as_float64(exp_avg, "exp_avg")
    schedule = lr if callable(lr) else (lambda _t, _lr=lr: _lr)
    for t, g in enumerate(grads):
        extra = {"step": t} if algorithm == "tiger" else {}
        lr_t = schedule(t)
        if not isinstance(lr_t, (int, float)) or isinstance(lr_t, bool) or not math.isfinite(lr_t):
            raise ValueError(f"lr schedule returned {lr_t!r} at step {t}; expected a finite float")
        theta, m = VARIATIONS[variation].step(algorithm, theta, g, m, lr=lr_t, **extra, **hyper)
        yield theta, m
