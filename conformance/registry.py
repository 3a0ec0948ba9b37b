"""Known implementations: each registered name builds a :class:`~.target.Target` on demand.

A :class:`Entry` names the distribution and module it needs (so a missing package is reported as
``not-installed`` without importing anything heavy), the algorithm, and a ``make()`` that imports
the implementation and returns the target with its declared profile. lionspec's own
implementations are registered here; third-party packages in :mod:`.thirdparty`.

>>> "lionspec-torch:Lion" in REGISTRY and REGISTRY["lionspec-torch:Lion"].algorithm
'lion'
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .profile import Profile
from .target import Optax, Target, TorchOptimizer, installed_version, resolve

__all__ = ["REGISTRY", "Entry", "get_target", "register"]

ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Entry:
    """A registered implementation."""

    name: str
    algorithm: str
    module: str
    make: Callable[[], Target]
    description: str = ""
    ours: bool = False
    needs: tuple[str, ...] = ()  # further modules that must be importable

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m.split(".")[0]) is not None
                   for m in (self.module, *self.needs))

    def version(self) -> str:
        return installed_version("lionspec" if self.ours else self.module)


#: Every registered implementation by name, in listing order.
REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    if entry.name in REGISTRY:
        raise ValueError(f"duplicate registry name {entry.name!r}")
    REGISTRY[entry.name] = entry
    return entry


def get_target(name: str, algorithm: str | None = None) -> Target:
    """The target registered as ``name``, or ``package.module:Attr`` resolved with
    ``algorithm`` (default lion)."""
    if name in REGISTRY:
        entry = REGISTRY[name]
        target = entry.make()
        target.version = target.version or entry.version()
        return target
    if ":" in name:
        return resolve(name, algorithm or "lion")
    raise ValueError(f"unknown target {name!r}: not registered (see `lionspec list`) and not "
                     "of the form package.module:Attr")


# ------------------------------------------------------------------------------ lionspec's own

_TORCH_PROFILE = Profile(compute="auto", c_form="muladd", param_form="universal",
                         storage_roundings=1, fma=False, dtypes=ALL_DTYPES,
                         momentum_dtypes=("float32",))

_PATHS = {"": {"foreach": False}, "-foreach": {"foreach": True}, "-fused": {"fused": True}}


def _ours_torch(cls_name: str, path: str) -> Callable[[], Target]:
    def make() -> Target:
        import lionspec.impls.torch as impl

        cls = getattr(impl, cls_name)
        algorithm = {"Lion": "lion", "Signum": "signum", "Tiger": "tiger"}[cls_name]
        return Target(f"lionspec-torch:{cls_name}{path}", algorithm,
                      TorchOptimizer(cls, kwargs=_PATHS[path]), _TORCH_PROFILE,
                      installed_version("lionspec"))
    return make


for _cls, _alg in (("Lion", "lion"), ("Signum", "signum"), ("Tiger", "tiger")):
    for _path, _kw in _PATHS.items():
        _args = ", ".join(f"{k}={v}" for k, v in _kw.items())
        register(Entry(f"lionspec-torch:{_cls}{_path}", _alg, "torch",
                       _ours_torch(_cls, _path), f"lionspec.impls.torch.{_cls}({_args})",
                       ours=True))

# The Triton kernels, through the torch optimizers' fused path: on CUDA when there is one, else
# through Triton's interpreter on the CPU (bfloat16 excluded there: the interpreter truncates).
def _ours_triton(cls_name: str) -> Callable[[], Target]:
    def make() -> Target:
        import torch

        import lionspec.impls.torch as impl
        from lionspec.impls.torch import _optimizer

        on_gpu = torch.cuda.is_available()
        if not on_gpu:
            _optimizer._TRITON_DEVICES = ("cuda", "cpu")  # this worker process only
        algorithm = {"Lion": "lion", "Signum": "signum", "Tiger": "tiger"}[cls_name]
        dtypes = ("float32", "float16", "bfloat16") if on_gpu else ("float32", "float16")
        profile = Profile(compute="float32", c_form="muladd", fma=on_gpu, dtypes=dtypes,
                          momentum_dtypes=("float32",))
        notes = () if on_gpu else ("run on the CPU through Triton's interpreter (no CUDA "
                                   "device); bfloat16 left out: the interpreter truncates it",)
        cls = getattr(impl, cls_name)
        return Target(f"lionspec-triton:{cls_name}", algorithm,
                      TorchOptimizer(cls, kwargs={"fused": True}), profile,
                      installed_version("lionspec"), notes)
    return make


for _cls, _alg in (("Lion", "lion"), ("Signum", "signum"), ("Tiger", "tiger")):
    register(Entry(f"lionspec-triton:{_cls}", _alg, "triton", _ours_triton(_cls),
                   f"lionspec.impls.triton kernels via {_cls}(fused=True)", ours=True,
                   needs=("torch",)))

# The JAX transformations: XLA:CPU runs with flush-to-zero (declared: ftz=True, judged with the
# FTZ bounds of :mod:`.ftz`); updates are -fl(η·fl(s + λθ)) added once by optax.apply_updates.
_JAX_PROFILE = Profile(compute="auto", c_form="muladd", param_form="bracket", storage_roundings=1,
                       fma=True, ftz=True, dtypes=ALL_DTYPES, momentum_dtypes=("float32",),
                       capabilities=frozenset({"momentum", "lr_change", "param_groups",
                                               "zero_size"}))


def _ours_jax(name: str) -> Callable[[], Target]:
    def make() -> Target:
        import os

        os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 parameters (this process only)
        import lionspec.impls.jax as impl

        def factory(case: Any, learning_rate: Any) -> Any:
            h, mu = case.hyper, case.momentum_dtype
            wd = h.get("weight_decay", 0.0 if case.algorithm != "tiger" else 0.01)
            if name == "lion":
                return impl.lion(learning_rate, b1=h.get("beta1", 0.9), b2=h.get("beta2", 0.99),
                                 weight_decay=wd, mu_dtype=mu)
            if name == "signum":
                return impl.signum(learning_rate, beta=h.get("beta", 0.9), weight_decay=wd,
                                   mu_dtype=mu)
            return impl.tiger(learning_rate, beta=h.get("beta", 0.965), weight_decay=wd,
                              accumulation_steps=h.get("accumulation_steps", 1),
                              roles=list(case.roles) if case.roles else None,
                              shrink_ratio=h.get("shrink_ratio", 0.99), mu_dtype=mu)

        return Target(f"lionspec-jax:{name}", name, Optax(factory), _JAX_PROFILE,
                      installed_version("lionspec"))
    return make


for _name in ("lion", "signum", "tiger"):
    register(Entry(f"lionspec-jax:{_name}", _name, "jax", _ours_jax(_name),
                   f"lionspec.impls.jax.{_name} (optax)", ours=True, needs=("optax",)))

from . import thirdparty  # noqa: E402,F401  (registers third-party targets)
