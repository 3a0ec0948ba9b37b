"""Third-party Lion, Tiger and SIGNUM implementations, registered for ``lionspec check``.

One :class:`~.registry.Entry` per implementation and per option that changes the arithmetic, each
with the :class:`~.profile.Profile` its installed source actually implements (read from the
package, not from its documentation): the precision it computes in, the form of the decision
variable (``mul+add``, ``lerp``, a fused kernel), how many times θ is rounded into storage, the
variations of the spec it implements (``torch.sign(NaN) = 0`` on CPU is ``nan:freeze``, a decay
divided by the initial learning rate is ``decay:lr_independent``, ...), where its momentum lives
and what it supports. Packages that are not installed show as ``not-installed`` without being
imported; implementations that cannot run here (CUDA-only kernels) are registered too and report
an error that says why.

Adapters: torch optimizers go through :class:`ThirdPartyTorch` (the suite's
:class:`~.target.TorchOptimizer`, plus a momentum whose storage dtype is fixed by the package, and
any exception of the package reported as an :class:`~.target.AdapterError`); optax factories
through :class:`~.target.Optax`; keras through :class:`KerasOptimizer`, which drives
``optimizer.apply_gradients`` and reads the momentum from ``optimizer.variables``. A keras backend
is chosen once per process (``KERAS_BACKEND``), which the runner's one-process-per-target design
allows: each ``keras:Lion(...)`` entry sets it in its ``make()``.

>>> sorted(n for n in REGISTRY if n.startswith("optax:"))
['optax:lion', 'optax:sign_sgd', 'optax:signum']
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from .profile import CAPABILITIES, Profile
from .registry import REGISTRY, Entry, register
from .target import AdapterError, Case, Optax, Target, TorchOptimizer, Trace, installed_version

__all__ = ["KerasOptimizer", "ThirdPartyTorch", "load_timm_lion"]

ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")
LOW_DTYPES = ("float32", "float16", "bfloat16")
_TORCH_CAPS = frozenset(CAPABILITIES)
_OPTAX_CAPS = frozenset({"momentum", "lr_change", "param_groups", "zero_size"})
_KERAS_CAPS = frozenset({"momentum", "inject_momentum", "lr_change", "param_groups",
                         "grad_check"})

_NAN_FREEZE = ("torch.sign/sgn(NaN) is 0 on CPU: a NaN gradient element freezes θ (it only "
               "decays) and leaves a NaN momentum, instead of propagating (nan:freeze)")
_FMA = "torch's CPU add(alpha=) kernel evaluates a + alpha·b with a fused multiply-add"


# ------------------------------------------------------------------------------------ torch

@dataclass
class ThirdPartyTorch(TorchOptimizer):
    """A third-party ``torch.optim.Optimizer`` as a target.

    As :class:`~.target.TorchOptimizer`, plus:

    * ``momentum_fn(state)`` reads the momentum's value from a parameter's state where it is
      not a plain tensor (bitsandbytes' 8-bit blockwise codes);
    * ``state_dtype`` is the storage dtype of a momentum the package always keeps in that dtype
      (``"float32"`` for bitsandbytes and DeepSpeed, whatever the parameter's dtype; ``None``:
      the parameter's own): a case asking for that momentum dtype runs as is (the package needs
      no option for it), another one is refused. The stored momentum is reported as it is, in
      its own wider format: the judge takes it as the exact input of the next step, and a more
      precise momentum is within the bound of the narrower one;
    * the zero step before initial momenta are set (``lr = 0``) also zeroes the weight decay;
    * any exception the package raises is an :class:`~.target.AdapterError` (the target could
      not run the case), never a crash of the worker.
    """

    state_dtype: str | None = None
    momentum_fn: Callable[[Mapping[str, Any]], Any] | None = None
    kind: str = "torch optimizer class (third-party)"

    def new(self, case: Case) -> tuple[Any, list[Any]]:
        if case.momentum_dtype is not None:
            if case.momentum_dtype != self.state_dtype:
                raise AdapterError(f"momentum_dtype={case.momentum_dtype} requested; this "
                                   "optimizer keeps its momentum in "
                                   f"{self.state_dtype or 'the parameter dtype'}")
            case = case.with_(momentum_dtype=None)
        try:
            return super().new(case)
        except AdapterError:
            raise
        except Exception as exc:  # any failure of the package: this case's error
            raise AdapterError(f"construction failed: {type(exc).__name__}: {exc}") from exc

    def momenta(self, opt: Any, params: list[Any]) -> list[np.ndarray] | None:
        if self.momentum_fn is not None:
            import torch

            states = [opt.state.get(p, {}) for p in params]
            if any(self.momentum_key not in st for st in states):
                return None
            return [self.momentum_fn(st).detach().to(torch.float64).cpu().numpy().copy()
                    for st in states]
        if self.momentum_key is None:
            return None
        for p in params:
            buf = opt.state.get(p, {}).get(self.momentum_key)
            if buf is None or not buf.is_floating_point():
                return None  # absent, or quantized (8-bit codes are not the momentum's value)
        return super().momenta(opt, params)

    def set_lr(self, opt: Any, lr: float) -> None:
        """Set the learning rate; ``lr = 0`` (the suite's zero step before initial momenta are
        set) also zeroes the weight decay for that step, so that options whose decay does not
        scale with the lr (``fixed_decay``) leave θ alone; the next lr restores it."""
        for group in opt.param_groups:
            if lr == 0.0 and "weight_decay" in group:
                group.setdefault("_lionspec_wd", group["weight_decay"])
                group["weight_decay"] = 0.0
            elif "_lionspec_wd" in group:
                group["weight_decay"] = group.pop("_lionspec_wd")
            group["lr"] = lr

    def run(self, case: Case) -> Trace:
        try:
            return super().run(case)
        except AdapterError:
            raise
        except Exception as exc:  # any failure of the package: this case's error
            raise AdapterError(f"{type(exc).__name__}: {exc}") from exc

    def run_resumed(self, case: Case, at: int) -> Trace:
        try:
            return super().run_resumed(case, at)
        except AdapterError:
            raise
        except Exception as exc:  # any failure of the package: this case's error
            raise AdapterError(f"{type(exc).__name__}: {exc}") from exc


def _describe(what: str, kwargs: Mapping[str, Any]) -> str:
    """``what(k=v, ...)`` for a listing."""
    return what + (f"({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")


def _lion_build(cls: Any, params: Any, hyper: Mapping[str, Any], **kwargs: Any) -> Any:
    """``cls(params, lr=, betas=(β1, β2), weight_decay=)``: the Lion convention."""
    return cls(params, lr=hyper["lr"], betas=(hyper.get("beta1", 0.9), hyper.get("beta2", 0.99)),
               weight_decay=hyper.get("weight_decay", 0.0), **kwargs)


def _po_tiger_build(cls: Any, params: Any, hyper: Mapping[str, Any], **kwargs: Any) -> Any:
    """pytorch-optimizer's ``Tiger(params, lr, beta, weight_decay)``: no accumulation option (its
    ``**kwargs`` would swallow ``accumulation_steps`` silently, so it is refused here)."""
    k = hyper.get("accumulation_steps", 1)
    if k != 1:
        raise AdapterError(f"accumulation_steps={k}: pytorch-optimizer's Tiger has no gradient "
                           "accumulation")
    return cls(params, lr=hyper["lr"], beta=hyper.get("beta", 0.965),
               weight_decay=hyper.get("weight_decay", 0.01), **kwargs)


def _eager(c_form: str, *, roundings: int = 2, variations: tuple[str, ...] = ("nan:freeze",),
           fma: bool | None = True, dtypes: tuple[str, ...] = ALL_DTYPES,
           capabilities: frozenset[str] = _TORCH_CAPS) -> Profile:
    """Eager PyTorch code: every op computes in the parameter's dtype (CPU kernels upcast 16-bit
    operands to float32 per op and round each result), θ decayed by ``mul_`` then moved by
    ``add_(alpha=)``."""
    return Profile(compute="param", c_form=c_form,
                   param_form="decay_first" if roundings == 2 else "universal",
                   storage_roundings=roundings, fma=fma, variations=variations, dtypes=dtypes,
                   capabilities=capabilities)


def _torch_entry(name: str, algorithm: str, module: str, attr: str, profile: Profile, *,
                 description: str, kwargs: Mapping[str, Any] | None = None,
                 build: Callable[..., Any] | None = None, momentum_key: str | None = "exp_avg",
                 state_dtype: str | None = None, notes: tuple[str, ...] = (),
                 momentum_fn: Callable[[Mapping[str, Any]], Any] | None = None,
                 needs: tuple[str, ...] = (), distribution: str | None = None,
                 loader: Callable[[], tuple[Any, tuple[str, ...]]] | None = None) -> Entry:
    def make() -> Target:
        extra: tuple[str, ...] = ()
        if loader is not None:
            cls, extra = loader()
        else:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            cls = obj
        adapter = ThirdPartyTorch(cls, build=build or (_lion_build if algorithm == "lion"
                                                        else None),
                                  momentum_key=momentum_key, role_key=None,
                                  kwargs=dict(kwargs or {}), state_dtype=state_dtype,
                                  momentum_fn=momentum_fn)
        return Target(name, algorithm, adapter, profile,
                      installed_version(distribution or module), notes + extra)

    return register(Entry(name, algorithm, module.split(".")[0], make, description,
                          needs=needs))


def _unavailable(name: str, algorithm: str, module: str, reason: str, description: str,
                 needs: tuple[str, ...] = ()) -> Entry:
    """An implementation that cannot run on this machine: checking it reports ``reason``."""
    def make() -> Target:
        raise AdapterError(reason)

    return register(Entry(name, algorithm, module, make, description, needs=needs))


# ----------------------------------------------------------------------------- lion-pytorch

_LP = "lion_pytorch"
_LP_NOTE = ("lion-pytorch decays θ with mul_(1 − lr·wd) and then adds −lr·sign(c) with add_: "
            "two roundings of θ into its storage dtype")
for _name, _attr, _kw, _form, _extra in (
        ("lion-pytorch:Lion", "Lion", {}, "muladd", ()),
        ("lion-pytorch:Lion(decoupled_weight_decay=True)", "Lion",
         {"decoupled_weight_decay": True}, "muladd", ("decay:lr_independent",)),
        ("lion-pytorch:foreach.Lion", "foreach.Lion", {}, "lerp", ()),
        ("lion-pytorch:foreach.Lion(decoupled_weight_decay=True)", "foreach.Lion",
         {"decoupled_weight_decay": True}, "lerp", ("decay:lr_independent",)),
        ("lion-pytorch:cautious.Lion", "cautious.Lion", {}, "muladd", ()),
):
    _notes = [_LP_NOTE, _NAN_FREEZE]
    if _form == "muladd":
        _notes.append(_FMA)
    if _extra:
        _notes.append("decoupled_weight_decay=True divides λ by the lr given at construction: "
                      "θ·(1 − λ·lr_t/lr_0) (decay:lr_independent with η_max = the initial lr)")
    if _attr.startswith("cautious"):
        _notes.append("cautious.Lion is Cautious Lion (arXiv 2411.16085), not Lion: with its "
                      "default cautious_factor=0 it zeroes update elements whose sign disagrees "
                      "with the gradient and rescales the rest by 1/mean(mask), so it is expected "
                      "to deviate (values and elementwise independence)")
    _mod = _LP + ("" if "." not in _attr else "." + {"foreach": "foreach",
                                                     "cautious": "cautious_lion"}[
                                                         _attr.split(".")[0]])
    _torch_entry(_name, "lion", _mod, _attr.split(".")[-1],
                 _eager(_form, variations=("nan:freeze", *_extra)),
                 description=_describe(f"{_mod}.{_attr.split('.')[-1]}", _kw),
                 kwargs=_kw, notes=tuple(_notes), distribution="lion-pytorch")

_unavailable(
    "lion-pytorch:Lion(use_triton=True)", "lion", _LP,
    "not runnable on CPU: lion_pytorch/triton.py update_fn asserts that every tensor is CUDA "
    "(assert all(t.is_cuda ...)), and its kernel cannot run under TRITON_INTERPRET=1 either: "
    "@triton.autotune benchmarks its configs on a GPU driver ('0 active drivers'). Needs a CUDA "
    "device and a device-aware adapter. (Read from source: diff form c = (m − g)·β1 + g, "
    "where(c > 0, −lr, lr)·(c ≠ 0), so sign(NaN) = −1 and sign(0) = 0; θ·(1 − lr·wd) in the "
    "kernel; one store of θ)",
    "lion_pytorch.Lion(use_triton=True): Triton kernel, CUDA only", needs=("triton",))


# ------------------------------------------------------------------------ pytorch-optimizer

_PO = "pytorch_optimizer"
_PO_NOTE = ("pytorch-optimizer takes its foreach path on CPU by default (foreach=None): "
            "_foreach_mul_ decay, _foreach_lerp for c, _foreach_sign_, _foreach_add_; two "
            "roundings of θ")
for _name, _alg, _attr, _kw, _vars, _key, _extra_notes in (
        ("pytorch-optimizer:Lion", "lion", "Lion", {}, (), "exp_avg", (_PO_NOTE,)),
        ("pytorch-optimizer:Lion(foreach=False)", "lion", "Lion", {"foreach": False}, (),
         "exp_avg", ("per-parameter path: lerp, sign_, add_(alpha=); same arithmetic as the "
                     "foreach path",)),
        ("pytorch-optimizer:Lion(weight_decouple=False)", "lion", "Lion",
         {"weight_decouple": False}, ("decay:coupled",), "exp_avg",
         ("weight_decouple=False adds λ·θ to the gradient in place (grad.add_ / "
          "_foreach_add_(grads, params)): coupled L2 decay, and the caller's .grad is "
          "modified",)),
        ("pytorch-optimizer:Lion(fixed_decay=True)", "lion", "Lion", {"fixed_decay": True},
         ("decay:unscaled",), "exp_avg",
         ("fixed_decay=True decays θ·(1 − λ), not scaled by the lr (decay:unscaled)",)),
        ("pytorch-optimizer:Tiger", "tiger", "Tiger", {}, ("nan:propagate",), "exp_avg",
         ("pytorch-optimizer's Tiger is the simplified update θ·(1 − lr·λ) − lr·sign(m): no "
          "RMS-scaled per-role learning rate, no gradient accumulation, no NaN shrink rule "
          "(sign(NaN) = 0 freezes the element); expected to deviate from the Tiger spec",)),
        ("pytorch-optimizer:SignSGD", "signum", "SignSGD", {}, (), "momentum_buffer",
         ("SignSGD with momentum > 0 (default 0.9) is SIGNUM: m = lerp(m, g, 1 − β), "
          "θ·(1 − lr·λ) − lr·sign(m)", _PO_NOTE)),
        ("pytorch-optimizer:SignSGD(weight_decouple=False)", "signum", "SignSGD",
         {"weight_decouple": False}, ("decay:coupled",), "momentum_buffer",
         ("weight_decouple=False adds λ·θ to the gradient in place: coupled L2 decay, the "
          "caller's .grad is modified",)),
):
    _torch_entry(_name, _alg, _PO, _attr, _eager("lerp", variations=("nan:freeze", *_vars),
                                                 fma=None),
                 description=_describe(f"pytorch_optimizer.{_attr}", _kw),
                 kwargs=_kw, momentum_key=_key, notes=(*_extra_notes, _NAN_FREEZE),
                 build=_po_tiger_build if _alg == "tiger" else None,
                 distribution="pytorch-optimizer")


# ------------------------------------------------------------------------------------ timm

def load_timm_lion() -> tuple[Any, tuple[str, ...]]:
    """``timm.optim.lion.Lion``. ``import timm`` needs torchvision; where that fails, the
    ``timm`` and ``timm.optim`` packages are stood in by empty namespace modules so that
    ``timm/optim/lion.py`` (which needs only ``._helpers`` and ``._types``) imports by file path
    without running the package ``__init__``. Returns the class and a note saying which."""
    stubbed = getattr(sys.modules.get("timm"), "_lionspec_stub", None)
    if stubbed is None:
        try:
            from timm.optim import lion as module  # type: ignore[import-not-found]
            return module.Lion, ()
        except ImportError as exc:
            stubbed = f"{type(exc).__name__}: {exc}"
        spec = importlib.util.find_spec("timm")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("timm is not installed")
        root = next(iter(spec.submodule_search_locations))
        for name, path in (("timm", root), ("timm.optim", os.path.join(root, "optim"))):
            stub = types.ModuleType(name)
            stub.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            stub.__spec__.submodule_search_locations = [path]
            stub.__path__ = [path]
            stub.__package__ = name
            stub._lionspec_stub = stubbed  # type: ignore[attr-defined]
            sys.modules[name] = stub
    module = importlib.import_module("timm.optim.lion")
    return module.Lion, (f"timm loaded without its package __init__ ({stubbed}): "
                         "timm/optim/lion.py imported by file path",)


_TIMM_NOTE = ("timm's single-tensor path (the CPU default, foreach=None): mul_(1 − lr·λ) always "
              "(also for λ = 0), lerp for c, sign_, add_(alpha=): two roundings of θ")
for _name, _kw, _note in (
        ("timm:Lion", {}, _TIMM_NOTE),
        ("timm:Lion(foreach=True)", {"foreach": True},
         "foreach path: _foreach_mul_, _foreach_lerp, sign_, _foreach_add_: same arithmetic"),
        ("timm:Lion(corrected_weight_decay=True)", {"corrected_weight_decay": True},
         "corrected_weight_decay=True decays θ·(1 − λ·lr_t²/lr_0) (lr_0: the lr at "
         "construction): equal to the spec while lr_t = lr_0, not a named variation otherwise"),
        ("timm:Lion(caution=True)", {"caution": True},
         "caution=True is Cautious Lion: update elements whose sign disagrees with the gradient "
         "are zeroed and the rest rescaled by 1/mean(mask): expected to deviate"),
):
    _torch_entry(_name, "lion", "timm", "optim.Lion", _eager("lerp", fma=None),
                 description=_describe("timm.optim.Lion", _kw),
                 kwargs=_kw, notes=(_note, _NAN_FREEZE), loader=load_timm_lion,
                 distribution="timm")


# ----------------------------------------------------------------------------------- optimi

_OPTIMI_NOTE = ("optimi's for-loop path (the CPU default: Triton needs a CUDA/XPU device): "
                "mul_(1 − lr·λ), lerp for c, sign_, add_(alpha=)")
_KAHAN = ("kahan_sum defaults to on for float16/bfloat16 parameters: θ is stored with a Kahan "
          "compensation buffer (state 'kahan_comp'), so θ tracks the exact trajectory instead "
          "of being rounded afresh each step (more accurate than the spec's per-step rounding; a "
          "per-step judgement flags it), and the step overwrites the caller's .grad as scratch "
          "space (grad.copy_(param))")
for _name, _kw, _vars, _notes in (
        ("optimi:Lion", {}, (), (_OPTIMI_NOTE, _KAHAN)),
        ("optimi:Lion(kahan_sum=False)", {"kahan_sum": False}, (), (_OPTIMI_NOTE,)),
        ("optimi:Lion(foreach=True)", {"foreach": True, "kahan_sum": False}, (),
         ("foreach path (_foreach_mul_, _foreach_lerp, _foreach_sign_, _foreach_add_), "
          "kahan_sum=False",)),
        ("optimi:Lion(decouple_lr=True)", {"decouple_lr": True, "kahan_sum": False},
         ("decay:lr_independent",),
         ("decouple_lr=True decays θ·(1 − λ·lr_t/max_lr), max_lr defaulting to the lr at "
          "construction (decay:lr_independent); kahan_sum=False",)),
):
    _torch_entry(_name, "lion", "optimi", "Lion",
                 _eager("lerp", variations=("nan:freeze", *_vars), fma=None),
                 description=_describe("optimi.Lion", _kw),
                 kwargs={"triton": False, **_kw}, notes=(*_notes, _NAN_FREEZE),
                 distribution="torch-optimi")


def _optimi_triton_lion() -> tuple[Any, tuple[str, ...]]:
    """``optimi.Lion`` with its Triton kernel run by Triton's interpreter on CPU tensors:
    ``TRITON_INTERPRET=1`` must be set before ``optimi`` defines its kernels (at import)."""
    if "optimi" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise AdapterError("optimi was imported before TRITON_INTERPRET=1 was set: its Triton "
                           "kernels are compiled kernels, which need a GPU")
    os.environ["TRITON_INTERPRET"] = "1"
    from optimi import Lion

    return Lion, ("TRITON_INTERPRET=1 (set before optimi is imported): the kernel runs in "
                  "Triton's interpreter on CPU tensors (NumPy arithmetic, no FMA contraction); "
                  "bfloat16 is not offered (the interpreter computes bf16 on raw bit patterns)",)


_torch_entry("optimi:Lion(triton=True)", "lion", "optimi", "Lion",
             Profile(compute="param", c_form="lerp", param_form="decay_first",
                     storage_roundings=2, fma=False, variations=("nan:freeze",),
                     dtypes=("float32", "float16")),
             description="optimi.Lion(triton=True, kahan_sum=False), Triton interpreter",
             kwargs={"triton": True, "kahan_sum": False}, loader=_optimi_triton_lion,
             notes=("optimi's _lion_kernel: g and m upcast to float32, c = m + (1 − β1)·(g − m) "
                    "(lerp), sign by where(c > 0, 1, where(c < 0, −1, 0)) so sign(NaN) = 0 "
                    "(nan:freeze), m stored back in the parameter's dtype; θ·(1 − lr·λ) cast to "
                    "the parameter's dtype, then θ + cast(−lr·sign): two roundings of θ and lr "
                    "rounded to the parameter's dtype; float64 parameters would be computed in "
                    "float32 (not offered)",),
             needs=("triton",), distribution="torch-optimi")


# ----------------------------------------------------------------------------- bitsandbytes

_BNB_NOTE = ("bitsandbytes on CPU (backends/cpu/ops.py): θ upcast to float32, θ·(1 − lr·λ) "
             "(mul_, float32) then add_(sign(c), alpha=−lr) (float32), then copied back into the "
             "parameter's dtype (one rounding into 16-bit storage, none extra in float32); c = "
             "m·β1 + g·(1 − β1) in float32; momentum 'state1' is always float32. float64 "
             "parameters are computed in float32 too")
def _bnb_dequantized(state: Mapping[str, Any]) -> Any:
    """The value of bitsandbytes' momentum: ``state1`` itself (32-bit), or the 8-bit blockwise
    codes dequantized as the CPU kernel does before each step (blocksize 256)."""
    buf = state["state1"]
    if buf.is_floating_point():
        return buf
    import torch

    return torch.ops.bitsandbytes.dequantize_blockwise(buf, state["absmax1"], state["qmap1"],
                                                       256, torch.float32)


_bnb_profile = Profile(compute="float32", c_form="muladd", param_form="decay_first",
                       storage_roundings=1, fma=True, variations=("nan:freeze",),
                       dtypes=LOW_DTYPES, momentum_dtypes=("float32",))
for _name, _attr, _kw, _key, _caps, _notes in (
        ("bitsandbytes:Lion", "Lion", {}, "state1", _TORCH_CAPS, ()),
        ("bitsandbytes:Lion8bit", "Lion8bit", {}, "state1", _TORCH_CAPS,
         ("Lion8bit keeps a 32-bit state for tensors under min_8bit_size=4096 elements: on the "
          "suite's small tensors it is the 32-bit Lion",)),
        ("bitsandbytes:Lion8bit(min_8bit_size=0)", "Lion8bit", {"min_8bit_size": 0}, "state1",
         _TORCH_CAPS - {"inject_momentum"},
         ("min_8bit_size=0 forces the 8-bit blockwise-quantized momentum (dynamic map, "
          "blocksize 256): m is requantized every step, so it is expected to deviate; the "
          "momentum is read by dequantizing state1 with absmax1/qmap1, as the kernel does",)),
        ("bitsandbytes:PagedLion", "PagedLion", {}, "state1", _TORCH_CAPS,
         ("paged state: on CPU the pages are ordinary tensors, the arithmetic is Lion's 32-bit "
          "CPU kernel",)),
):
    _torch_entry(_name, "lion", "bitsandbytes.optim", _attr,
                 replace(_bnb_profile, capabilities=_caps),
                 description=_describe(f"bitsandbytes.optim.{_attr}", _kw),
                 kwargs=_kw, momentum_key=_key, state_dtype="float32",
                 momentum_fn=_bnb_dequantized,
                 notes=(_BNB_NOTE, *_notes, _NAN_FREEZE), distribution="bitsandbytes")


# -------------------------------------------------------------------------------- deepspeed

_DS_NOTE = ("DeepSpeedCPULion JIT-builds the cpu_lion C++ op on first use (about 40-160 s, "
            "cached in ~/.cache/torch_extensions). csrc/lion/cpu_lion_impl.cpp: float32 "
            "arithmetic, 1 − β formed in float32, c = g·(1 − β1) + m·β1, θ' = θ·(1 − lr·λ) + "
            "(−copysign(lr, c)) in one expression (FMA in the AVX path), stored once; "
            "copysign makes sign(+0) = +1 and sign(−0) = −1 (zero gradients on zero momentum "
            "move θ by −lr: sign0:+1), and sign(NaN) = ±1 by the NaN's sign bit")
_DS_NONCONTIG = ("ds_lion_step works on params.contiguous(): a non-contiguous parameter is "
                 "updated in a temporary copy and the step is lost")
for _name, _kw, _state in (
        ("deepspeed:DeepSpeedCPULion", {}, "float32"),
        ("deepspeed:DeepSpeedCPULion(fp32_optimizer_states=False)",
         {"fp32_optimizer_states": False}, None),
):
    _torch_entry(_name, "lion", "deepspeed.ops.lion", "DeepSpeedCPULion",
                 Profile(compute="float32", c_form="muladd_one_minus_beta",
                         param_form="decay_first", storage_roundings=1, fma=True,
                         variations=("sign0:+1",), dtypes=LOW_DTYPES,
                         momentum_dtypes=("float32",) if _state else ()),
                 description=_describe("deepspeed.ops.lion.DeepSpeedCPULion", _kw),
                 kwargs=_kw, state_dtype=_state, notes=(_DS_NOTE, _DS_NONCONTIG),
                 needs=("cpuinfo",), distribution="deepspeed")

_unavailable(
    "deepspeed:FusedLion", "lion", "deepspeed",
    "CUDA only: deepspeed.ops.lion.FusedLion loads FusedLionBuilder, which compiles "
    "csrc/lion/multi_tensor_lion.cu with nvcc and needs CUDA tensors; this machine has the CPU "
    "build of torch and no CUDA device",
    "deepspeed.ops.lion.FusedLion: multi-tensor CUDA kernel")


# ------------------------------------------------------------------------------ llm-foundry

_torch_entry(
    "llm-foundry:DecoupledLionW", "lion", "llmfoundry.optim.lion", "DecoupledLionW",
    _eager("lerp", variations=("nan:freeze", "decay:lr_independent"), fma=None),
    description="llmfoundry.optim.lion.DecoupledLionW",
    notes=("θ·(1 − λ·lr_t/initial_lr) (decay:lr_independent with η_max = the lr at "
           "construction), lerp for c, sign_, add_(alpha=): read from the source "
           "(mosaicml/llm-foundry llmfoundry/optim/lion.py)",
           "llm-foundry pins torch (0.22: torch>=2.7.0,<2.7.1) and imports composer; it is not "
           "installed next to torch 2.13 here", _NAN_FREEZE),
    needs=("composer",), distribution="llm-foundry")


# ------------------------------------------------------------------------------------ optax

def _optax_lion(case: Case, learning_rate: Any) -> Any:
    import optax

    h = case.hyper
    return optax.lion(learning_rate, b1=h.get("beta1", 0.9), b2=h.get("beta2", 0.99),
                      mu_dtype=case.momentum_dtype, weight_decay=h.get("weight_decay", 0.0))


class _MuView(NamedTuple):
    """An optax state with the momentum exposed as ``mu`` (what the Optax adapter reads)."""

    mu: Any
    inner: Any


def _expose_ema(tx: Any) -> Any:
    """``tx`` (a chain whose first member is ``optax.ema``) with its EMA exposed as ``.mu``;
    the arithmetic is untouched."""
    import optax

    def init(params: Any) -> _MuView:
        state = tx.init(params)
        return _MuView(state[0].ema, state)

    def update(updates: Any, state: _MuView, params: Any = None) -> tuple[Any, _MuView]:
        updates, inner = tx.update(updates, state.inner, params)
        return updates, _MuView(inner[0].ema, inner)

    return optax.GradientTransformation(init, update)


def _optax_signum(case: Case, learning_rate: Any) -> Any:
    import optax

    beta, wd = case.hyper.get("beta", 0.9), case.hyper.get("weight_decay", 0.0)
    if not wd:
        return _expose_ema(optax.signum(learning_rate, beta=beta,
                                        accumulator_dtype=case.momentum_dtype))
    return _expose_ema(optax.chain(
        optax.ema(beta, debias=False, accumulator_dtype=case.momentum_dtype),
        optax.scale_by_sign(), optax.add_decayed_weights(wd),
        optax.scale_by_learning_rate(learning_rate)))


def _optax_sign_sgd(case: Case, learning_rate: Any) -> Any:
    import optax

    wd = case.hyper.get("weight_decay", 0.0)
    if not wd:
        return optax.sign_sgd(learning_rate)
    return optax.chain(optax.scale_by_sign(), optax.add_decayed_weights(wd),
                       optax.scale_by_learning_rate(learning_rate))


_OPTAX_NOTE = ("optax: u = −lr·(sign(c) + λ·θ) in the parameter's dtype, then "
               "apply_updates rounds θ + u once (the 'bracket' form); jnp.sign(NaN) = NaN "
               "propagates; jax runs without x64 here, so float64 is not offered",
               "XLA on CPU flushes subnormal results to zero (FTZ/DAZ): a subnormal θ decayed "
               "by 1 − lr·λ becomes 0 (no named variation covers FTZ yet)")


def _optax_entry(name: str, algorithm: str, factory: Callable[..., Any], description: str,
                 profile: Profile, notes: tuple[str, ...]) -> Entry:
    def make() -> Target:
        return Target(name, algorithm, Optax(factory), profile, installed_version("optax"),
                      notes)

    return register(Entry(name, algorithm, "optax", make, description, needs=("jax",)))


_optax_entry("optax:lion", "lion", _optax_lion, "optax.lion(lr, b1, b2, mu_dtype, weight_decay)",
             Profile(compute="param", c_form="muladd", param_form="bracket", fma=None, ftz=True,
                     dtypes=LOW_DTYPES, momentum_dtypes=("float32",), capabilities=_OPTAX_CAPS),
             (_OPTAX_NOTE,))
_optax_entry("optax:signum", "signum", _optax_signum,
             "optax.signum(lr, beta); with λ > 0 the same chain with add_decayed_weights",
             Profile(compute="param", c_form="muladd", param_form="bracket", fma=None, ftz=True,
                     dtypes=LOW_DTYPES, momentum_dtypes=("float32",),
                     capabilities=_OPTAX_CAPS),
             (_OPTAX_NOTE, "optax.signum has no weight decay: with λ > 0 the adapter builds "
              "chain(ema(β, debias=False), scale_by_sign(), add_decayed_weights(λ), "
              "scale_by_learning_rate(lr)), optax.signum's own chain with decay inserted as "
              "optax.lion does", "its momentum is optax.ema's EmaState.ema; the Optax adapter "
              "reads .mu, so the state is wrapped to expose it (arithmetic untouched)"))
_optax_entry("optax:sign_sgd", "signum", _optax_sign_sgd,
             "optax.sign_sgd(lr): SIGNUM with β = 0 (no momentum)",
             Profile(compute="param", c_form="muladd", param_form="bracket", fma=None, ftz=True,
                     dtypes=LOW_DTYPES, capabilities=_OPTAX_CAPS - {"momentum"}),
             (_OPTAX_NOTE, "sign_sgd has no momentum: it is SIGNUM with β = 0 and ignores the "
              "suite's β = 0.9, so it is expected to deviate (θ moves by sign(g))"))


# ------------------------------------------------------------------------------------ keras

@dataclass
class KerasOptimizer:
    """``keras.optimizers.Lion`` on one keras backend, driven with ``apply_gradients``.

    Parameters are ``keras.Variable`` s of the case's dtypes; the learning rate is assigned to
    ``optimizer.learning_rate`` before each step; the momenta are the optimizer's variables
    whose path ends in ``momentum`` (one per parameter, in order), read back and, for initial
    momenta, assigned after ``optimizer.build``. ``weight_decay=None`` when λ = 0 (keras' own
    default: ``weight_decay=0.0`` would still compute θ − θ·0·lr and turn −0 into +0).
    """

    backend: str
    kind: str = "keras optimizer (apply_gradients)"

    def _keras(self) -> Any:
        import keras

        if keras.backend.backend() != self.backend:
            raise AdapterError(f"keras runs with the {keras.backend.backend()} backend in this "
                               f"process, not {self.backend} (KERAS_BACKEND is read once, at "
                               "import)")
        return keras

    def run(self, case: Case) -> Trace:
        keras = self._keras()
        if case.transposed:
            raise AdapterError("keras variables have no memory layout to vary")
        if case.momentum_dtype is not None:
            raise AdapterError("keras' Lion keeps its momentum in the variable's dtype")
        try:
            return self._run(keras, case)
        except AdapterError:
            raise
        except Exception as exc:  # any failure of keras: this case's error
            raise AdapterError(f"{type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _f64(keras: Any, value: Any) -> np.ndarray:
        arr = np.asarray(keras.ops.convert_to_numpy(value))
        return arr.astype(np.float32).astype(np.float64) if arr.dtype.itemsize == 2 \
            else arr.astype(np.float64)

    def _run(self, keras: Any, case: Case) -> Trace:
        h = case.hyper
        variables = [keras.Variable(np.asarray(p, dtype=np.float64), dtype=case.dtype_of(i),
                                    name=f"p{i}") for i, p in enumerate(case.params)]
        wd = h.get("weight_decay", 0.0)
        opt = keras.optimizers.Lion(learning_rate=case.lr_at(0) if case.steps else h["lr"],
                                    beta_1=h.get("beta1", 0.9), beta_2=h.get("beta2", 0.99),
                                    weight_decay=wd if wd else None)
        opt.build(variables)
        moms = [v for v in opt.variables if v.path.endswith("momentum")]
        if len(moms) != len(variables):
            raise AdapterError(f"found {len(moms)} momentum variables for {len(variables)} "
                               "parameters")
        if case.exp_avgs is not None:
            for m, value, var in zip(moms, case.exp_avgs, variables, strict=True):
                m.assign(keras.ops.convert_to_tensor(np.asarray(value), dtype=var.dtype))
        trace = Trace([[self._f64(keras, v.value) for v in variables]],
                      [list(case.exp_avgs) if case.exp_avgs is not None
                       else [np.zeros(np.shape(p)) for p in case.params]])
        for t, step in enumerate(case.grads):
            opt.learning_rate = case.lr_at(t)
            grads = [keras.ops.convert_to_tensor(np.asarray(g), dtype=v.dtype)
                     for g, v in zip(step, variables, strict=True)]
            opt.apply_gradients(zip(grads, variables, strict=True))
            trace.grads_intact &= all(
                np.array_equal(self._f64(keras, g), np.asarray(want, dtype=np.float64),
                               equal_nan=True)
                for g, want in zip(grads, step, strict=True))
            trace.params.append([self._f64(keras, v.value) for v in variables])
            trace.momenta.append([self._f64(keras, m.value) for m in moms])
        return trace


_KERAS_NOTES = {
    "jax": ("keras.optimizers.Lion.update_step (jax backend): lr, β1, β2 cast to the "
            "variable's dtype, 1 − β formed in that dtype (bfloat16: β2 = 0.99 becomes "
            "0.98828125), c = m·β1 + g·(1 − β1), θ −= lr·sign(c); decay first as a separate "
            "assign θ − θ·λ·lr: two roundings of θ; jnp.sign(NaN) = NaN propagates",),
    "torch": ("keras' torch backend runs torch_lion.Lion._parallel_update_step: "
              "_foreach_mul(m, β1) then _foreach_add_(g, alpha=1 − β1), torch.sign (NaN → 0), "
              "θ += −(sign·lr) with lr cast to the first variable's dtype, decay first with "
              "_foreach_mul_(1 − λ·lr): two roundings of θ", _NAN_FREEZE),
}


def _keras_entry(backend: str) -> Entry:
    name = f"keras:Lion({backend})"

    def make() -> Target:
        os.environ["KERAS_BACKEND"] = backend
        adapter = KerasOptimizer(backend)
        keras = adapter._keras()
        variations = ("nan:freeze",) if backend == "torch" else ()
        dtypes = ALL_DTYPES if backend == "torch" else LOW_DTYPES
        profile = Profile(compute="param", c_form="muladd_one_minus_beta",
                          param_form="decay_first", storage_roundings=2, fma=None,
                          ftz=True if backend == "jax" else None,
                          variations=variations, dtypes=dtypes, capabilities=_KERAS_CAPS)
        return Target(name, "lion", adapter, profile, keras.__version__,
                      _KERAS_NOTES[backend] + (f"KERAS_BACKEND={backend}, set before keras "
                                               "is imported (one backend per process)",))

    return register(Entry(name, "lion", "keras", make,
                          f"keras.optimizers.Lion, {backend} backend (apply_gradients)",
                          needs=(backend,)))


for _backend in ("jax", "torch"):
    _keras_entry(_backend)


#: The names this module registers, in listing order.
THIRDPARTY = tuple(n for n, e in REGISTRY.items() if not e.ours)
