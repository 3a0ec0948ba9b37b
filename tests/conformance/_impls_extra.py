"""More small NumPy implementations for the low-precision, drift, accumulation and Tiger checks.

Each is written like framework code -- independently of the spec's arithmetic -- and each broken
one carries one deliberate bug that a named check must catch (its "known-bad"):

* :func:`ftz_target` -- an fp16 implementation that flushes subnormal results to zero;
* :func:`bf16_target` -- a bf16-compute implementation (every operation rounded to bf16), correct,
  or with the weight of g formed as ``1 − bf16(β)`` in bf16 (``one_minus_beta_in_bf16``);
* :func:`truncating_target` -- rounds θ twice per step into bf16 by truncation;
* :class:`TigerRef` -- Tiger in float32 over several tensors at once (roles, windows, NaN rule),
  with knobs that break one rule each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lionspec.conformance import Functional, Profile, Target
from lionspec.conformance.target import Case, Trace
from lionspec.spec.formats import round_to

from . import _impls

_FP16_TINY = 2.0**-14
_CENTRE = {"weight": 0.0, "embedding": 0.0, "bias": 0.0, "scale": 1.0}


# ------------------------------------------------------------------------------------ fp16 FTZ

def ftz_target(algorithm: str = "lion") -> Target:
    """The float32 reference over fp16 storage, flushing subnormal θ and m to zero on store."""
    inner = _impls.functional(algorithm)

    def fn(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, **hyper: Any
           ) -> tuple[np.ndarray, np.ndarray]:
        p, m = (np.asarray(x, dtype=np.float64) for x in inner(param, grad, exp_avg, **hyper))
        p, m = round_to(p, "float16"), round_to(m, "float16")
        return (np.where(np.abs(p) < _FP16_TINY, 0.0, p), np.where(np.abs(m) < _FP16_TINY, 0.0, m))

    return Target("fp16 flush-to-zero", algorithm, Functional(fn),
                  Profile(compute="float32", c_form="muladd", dtypes=("float16",)))


# ------------------------------------------------------------------------------- bf16 compute

def bf16_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, *, lr: float,
              beta1: float = 0.9, beta2: float = 0.99, beta: float | None = None,
              weight_decay: float = 0.0, _algorithm: str = "lion",
              _one_minus_beta_in_bf16: bool = False, **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lion or SIGNUM with every operation rounded to bf16 (muladd, decay-first form)."""
    def r(x: Any) -> np.ndarray:
        return round_to(np.asarray(x, dtype=np.float64), "bfloat16")

    def weight(b: float) -> np.ndarray:
        return r(1.0 - r(b)) if _one_minus_beta_in_bf16 else r(1.0 - b)

    x, g, m = param, grad, exp_avg
    if _algorithm == "lion":
        c = r(r(r(beta1) * m) + r(weight(beta1) * g))
        m_new = r(r(r(beta2) * m) + r(weight(beta2) * g))
    else:
        b = 0.9 if beta is None else beta
        c = m_new = r(r(r(b) * m) + r(weight(b) * g))
    s = np.where(np.isnan(c), c, np.sign(c))
    keep = r(1.0 - lr * weight_decay)
    return r(r(x * keep) - r(r(lr) * s)), m_new


def bf16_target(algorithm: str = "lion", *, one_minus_beta_in_bf16: bool = False) -> Target:
    """A bf16-compute target (profile compute="param", muladd, decay_first)."""
    def fn(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, **hyper: Any
           ) -> tuple[np.ndarray, np.ndarray]:
        return bf16_step(param, grad, exp_avg, _algorithm=algorithm,
                         _one_minus_beta_in_bf16=one_minus_beta_in_bf16, **hyper)

    name = "bf16 compute" + (", 1 − β formed in bf16" if one_minus_beta_in_bf16 else "")
    return Target(name, algorithm, Functional(fn),
                  Profile(compute="param", c_form="muladd", param_form="decay_first",
                          dtypes=("bfloat16",)))


# ------------------------------------------------------------------------------- truncation

def _truncate_bf16(x: np.ndarray) -> np.ndarray:
    """float64 → float32 (exact for these values) → bf16 by dropping the low 16 bits."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
    return bits.view(np.float32).astype(np.float64)


def truncating_target(algorithm: str = "lion") -> Target:
    """The float32 reference, but θ is stored twice per step into bf16 by truncation: once
    after the decay, once after the signed step."""
    def fn(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, **hyper: Any
           ) -> tuple[np.ndarray, np.ndarray]:
        hyper.pop("step", None)
        hyper.pop("role", None)
        lr, wd = hyper["lr"], hyper.get("weight_decay", 0.0)
        zero_lr = {**hyper, "lr": 0.0, "weight_decay": 0.0}
        _, m = _impls.reference(param, grad, exp_avg, _algorithm=algorithm, **zero_lr)
        # the sign the reference takes, from θ − η·s with θ = 0 and no decay
        p0, _ = _impls.reference(np.zeros_like(param), grad, exp_avg, _algorithm=algorithm,
                                 **{**hyper, "weight_decay": 0.0})
        s = -np.asarray(p0, dtype=np.float64) / lr
        decayed = _truncate_bf16(np.float32(param) * np.float32(1.0 - lr * wd))
        return _truncate_bf16(np.float32(decayed) - np.float32(lr) * np.float32(s)), m

    return Target("bf16 double truncation", algorithm, Functional(fn),
                  Profile(compute="float32", c_form="muladd", dtypes=("bfloat16",)))


def decay_stored_first_target(algorithm: str = "lion") -> Target:
    """The float32 reference over bf16 storage, but the decayed θ is stored into bf16 before the
    signed step (two storage roundings) while the profile declares one."""
    def fn(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, **hyper: Any
           ) -> tuple[np.ndarray, np.ndarray]:
        hyper.pop("step", None)
        hyper.pop("role", None)
        lr, wd = hyper["lr"], hyper.get("weight_decay", 0.0)
        decayed = round_to(np.float32(param) * np.float32(1.0 - lr * wd), "bfloat16")
        new, m = _impls.reference(decayed, grad, exp_avg, _algorithm=algorithm,
                                  **{**hyper, "weight_decay": 0.0})
        return new, m

    return Target("bf16 decay stored first", algorithm, Functional(fn),
                  Profile(compute="float32", c_form="muladd", dtypes=("bfloat16",)))


# ------------------------------------------------------------------------------------ Tiger

def tiger_tensors(params: list[np.ndarray], grads: list[np.ndarray], exp_avgs: list[np.ndarray],
                  *, step: int, lr: float, beta: float = 0.965, weight_decay: float = 0.01,
                  accumulation_steps: int = 1, shrink_ratio: float = 0.99,
                  roles: list[str], knobs: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """One Tiger micro-step over several tensors in float32 (inputs hold float32-exact values).

    Knobs (each breaks one rule): ``nan``: "propagate" (no NaN rule), "global" (one flag for all
    tensors), "nonfinite" (±Inf triggers it too), "update-only" (no shrink on non-final
    micro-steps); ``scale_centre``: the NaN rule's centre for scales; ``rms``: "rows" (weights'
    RMS per row); ``decay_all``: decay biases and scales too; ``accumulate``: False (every
    micro-step is a plain SIGNUM momentum step); ``hold``: False (θ moves every micro-step).
    """
    f32 = np.float32
    k = accumulation_steps
    first, last = step % k == 0, (step + 1) % k == 0
    nan_mode = knobs.get("nan", "shrink")

    def flagged(g: np.ndarray) -> bool:
        if nan_mode == "nonfinite":
            return not bool(np.isfinite(g).all())
        return bool(np.isnan(g).any())

    flags = [flagged(g) for g in grads]
    if nan_mode == "global":
        flags = [any(flags)] * len(flags)
    if nan_mode == "propagate":
        flags = [False] * len(flags)
    out_p, out_m = [], []
    for theta, g, m, role, flag in zip(params, grads, exp_avgs, roles, flags, strict=True):
        x, gg, mm = theta.astype(f32), g.astype(f32), m.astype(f32)
        if flag:
            centre = f32(knobs.get("scale_centre", 1.0) if role == "scale" else _CENTRE[role])
            if nan_mode == "update-only" and not last:
                out_p.append(x)
            else:
                out_p.append((x - centre) * f32(shrink_ratio) + centre)
            out_m.append(mm)
            continue
        if knobs.get("accumulate", True):
            b1 = f32(beta) if first else f32(1.0)
            m_new = b1 * mm + f32((1.0 - beta) / k) * gg
        else:
            m_new = f32(beta) * mm + f32(1.0 - beta) * gg
        out_m.append(m_new)
        if not (last or not knobs.get("hold", True)):
            out_p.append(x)
            continue
        s = np.where(np.isnan(m_new), m_new, np.sign(m_new))
        if role in ("bias", "scale"):
            eta: Any = f32(lr / 2)
            lam = f32(weight_decay) if knobs.get("decay_all") else f32(0.0)
        else:
            rows = role == "embedding" or (knobs.get("rms") == "rows" and x.ndim == 2)
            if rows and x.ndim >= 1:
                eta = f32(lr) * np.sqrt(np.mean(x * x, axis=-1, keepdims=True, dtype=f32))
            else:
                eta = f32(lr) * np.sqrt(np.mean(x * x, dtype=f32))
            lam = f32(weight_decay)
        out_p.append(x - eta * (s + lam * x))
    return out_p, out_m


@dataclass
class TigerRef:
    """A multi-tensor adapter over :func:`tiger_tensors` (a global NaN flag needs every tensor
    at once, which :class:`~lionspec.conformance.Functional` cannot give)."""

    knobs: dict[str, Any] = field(default_factory=dict)
    kind: str = "numpy tiger (float32)"

    def run(self, case: Case) -> Trace:
        n = len(case.params)
        roles = list(case.roles) if case.roles else ["weight"] * n
        params = [np.asarray(p, dtype=np.float64).copy() for p in case.params]
        momenta = ([np.asarray(m, dtype=np.float64).copy() for m in case.exp_avgs]
                   if case.exp_avgs is not None else [np.zeros(np.shape(p)) for p in params])
        trace = Trace([[p.copy() for p in params]], [[m.copy() for m in momenta]])
        hyper = {k: v for k, v in case.hyper.items() if k != "lr"}
        for t, step in enumerate(case.grads):
            with np.errstate(all="ignore"):
                new_p, new_m = tiger_tensors(params, [np.asarray(g) for g in step], momenta,
                                             step=t, lr=case.lr_at(t), roles=roles,
                                             knobs=self.knobs, **hyper)
            mdt = case.momentum_dtype
            params = [round_to(np.asarray(p, dtype=np.float64), case.dtype_of(i))
                      for i, p in enumerate(new_p)]
            momenta = [round_to(np.asarray(m, dtype=np.float64), mdt or case.dtype_of(i))
                       for i, m in enumerate(new_m)]
            trace.params.append([p.copy() for p in params])
            trace.momenta.append([m.copy() for m in momenta])
        return trace


def tiger_target(name: str = "numpy tiger", *,
                 dtypes: tuple[str, ...] = ("float32", "float16", "bfloat16"),
                 **knobs: Any) -> Target:
    """Tiger in float32 over ``dtypes`` storage, as a target (``knobs``: see
    :func:`tiger_tensors`)."""
    return Target(name, "tiger", TigerRef(dict(knobs)),
                  Profile(compute="float32", c_form="muladd", dtypes=dtypes))


def _bad_tiger(name: str, **knobs: Any) -> Callable[[], Target]:
    return lambda: tiger_target(name, dtypes=("float32",), **knobs)


#: check id -> (target factory, variation the diagnosis must name or None)
BROKEN: dict[str, list[tuple[Callable[[], Target], str | None]]] = {
    "fp16-underflow": [(lambda: ftz_target("lion"), None)],
    "bf16-cancellation": [(lambda: bf16_target("lion", one_minus_beta_in_bf16=True), None),
                          (lambda: decay_stored_first_target("lion"), None)],
    "drift": [(lambda: truncating_target("lion"), None)],
    "accumulation": [(_bad_tiger("no accumulation", accumulate=False), None),
                     (_bad_tiger("θ moves every micro-step", hold=False), None)],
    "tiger-roles": [(_bad_tiger("RMS per row for weights", rms="rows"), None),
                    (_bad_tiger("decay on biases", decay_all=True), None)],
    "tiger-nan-rule": [(_bad_tiger("no NaN rule", nan="propagate"), "nan:propagate"),
                       (_bad_tiger("global NaN flag", nan="global"),
                        "nan:shrink-global"),
                       (_bad_tiger("isfinite NaN rule", nan="nonfinite"),
                        "nan:shrink-nonfinite"),
                       (_bad_tiger("scale centre 0", scale_centre=0.0), None),
                       (_bad_tiger("no shrink mid-window", nan="update-only"), None)],
}


#: the arithmetic lionspec's torch optimizers declare (every dtype, fp32 momentum for 16-bit)
TORCH_PROFILE = Profile(c_form="muladd", dtypes=("float64", "float32", "float16", "bfloat16"),
                        momentum_dtypes=("float32",))


def torch_target(name: str) -> Target:
    """lionspec's torch ``Lion``/``Signum``/``Tiger`` as a target (skips without torch)."""
    import pytest

    torch_impls = pytest.importorskip("lionspec.impls.torch")
    from lionspec.conformance.target import TorchOptimizer

    return Target(f"torch {name}", name.lower(), TorchOptimizer(getattr(torch_impls, name)),
                  TORCH_PROFILE)


def assert_catches_known_bads(check_id: str) -> None:
    """Every known-bad of ``check_id`` (:data:`BROKEN`) fails it with a reproducing case and the
    expected diagnosis (a variation name, or none)."""
    from lionspec.conformance import run_suite

    for factory, variation in BROKEN[check_id]:
        bad = factory()
        result = run_suite(bad, profile="quick", checks=[check_id]).results[0]
        assert result.status == "fail", (bad.name, result)
        assert result.lines and result.repro.startswith("Case("), bad.name
        assert result.variation == variation, (bad.name, result.diagnosis)
        if variation:
            assert result.diagnosis.startswith(f"consistent with {variation}")
