"""What the conformance suite checks: cases, traces, targets and the adapters that drive them.

The suite talks to every implementation through one small protocol, :class:`Adapter`: given a
:class:`Case` (the algorithm, its hyperparameters in the spec's names, the parameters' values and
dtypes, and one gradient per tensor per step) it runs the steps and returns a :class:`Trace` (the
stored parameters and, where it can see them, momenta after every step, as float64 arrays of the
exact stored values). Three kinds of adapter ship here:

* :class:`TorchOptimizer` — a ``torch.optim.Optimizer`` class, constructed as
  ``Attr(params, lr=..., betas=(b1, b2), weight_decay=...)`` (Lion),
  ``Attr(params, lr=..., momentum=..., weight_decay=...)`` (SIGNUM) or
  ``Attr(params, lr=..., beta=..., weight_decay=..., accumulation_steps=...)`` (Tiger) unless its
  ``build`` callable says otherwise;
* :class:`Optax` — an optax-style ``GradientTransformation`` factory;
* :class:`Functional` — a step function with the spec's signature
  ``fn(param, grad, exp_avg, **hyper) -> (param, exp_avg)`` on NumPy arrays.

A :class:`Target` couples an adapter with its declared :class:`~.profile.Profile` (how it
evaluates a step, which variations it implements, what it supports). :func:`resolve` turns
``"package.module:Attr"`` into a target.

>>> import numpy as np
>>> from lionspec.spec import lion_step
>>> t = Target("spec-float64", "lion", Functional(lion_step), Profile(compute="float64",
...            dtypes=("float64",)))
>>> case = Case("lion", params=(np.array([1.0, -2.0]),), grads=((np.array([0.5, 0.0]),),),
...             hyper={"lr": 0.5}, param_dtype="float64")
>>> t.adapter.run(case).params[1][0].tolist()
[0.5, -2.0]
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from lionspec.spec.formats import round_to

from .profile import CAPABILITIES, Profile

__all__ = ["ALGORITHMS", "Adapter", "AdapterError", "Case", "Functional", "Optax", "Target",
           "TorchOptimizer", "Trace", "installed_version", "resolve", "stored_values",
           "torch_dtype"]

ALGORITHMS = ("lion", "signum", "tiger")


class AdapterError(RuntimeError):
    """The target could not run a case (not a deviation: an error of the target or its setup)."""


@dataclass(frozen=True)
class Case:
    """One scenario for a target.

    ``params`` are float64 arrays whose values are exactly representable in ``param_dtype`` (or
    per tensor in ``param_dtypes``); ``grads[t][i]`` is tensor ``i``'s gradient at step ``t``
    (also representable: it is stored in the parameter's dtype). ``hyper`` uses the spec's names:
    ``lr``, ``beta1``/``beta2`` (Lion), ``beta`` (SIGNUM, Tiger), ``weight_decay``, and Tiger's
    ``accumulation_steps``/``shrink_ratio``. ``lrs`` gives the learning rate of each step when it
    changes after construction; ``exp_avgs`` initial momenta (``None``: zeros, the fresh state);
    ``roles`` Tiger's role per tensor; ``transposed`` lays every 2-D parameter out transposed
    (non-contiguous) in memory.
    """

    algorithm: str
    params: tuple[np.ndarray, ...]
    grads: tuple[tuple[np.ndarray, ...], ...]
    hyper: Mapping[str, Any]
    param_dtype: str = "float32"
    momentum_dtype: str | None = None
    param_dtypes: tuple[str, ...] | None = None
    roles: tuple[str, ...] | None = None
    lrs: tuple[float, ...] | None = None
    exp_avgs: tuple[np.ndarray, ...] | None = None
    transposed: bool = False

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if any(len(step) != len(self.params) for step in self.grads):
            raise ValueError("every step needs one gradient per parameter")
        if self.lrs is not None and len(self.lrs) != len(self.grads):
            raise ValueError(f"lrs needs one learning rate per step ({len(self.grads)}), got "
                             f"{len(self.lrs)}")

    @property
    def steps(self) -> int:
        return len(self.grads)

    def dtype_of(self, i: int) -> str:
        """The storage dtype of parameter ``i``."""
        return self.param_dtypes[i] if self.param_dtypes else self.param_dtype

    def lr_at(self, t: int) -> float:
        return float(self.lrs[t]) if self.lrs is not None else float(self.hyper["lr"])

    def spec_hyper(self, t: int, i: int) -> dict[str, Any]:
        """Keyword arguments of the spec's step function for tensor ``i`` at step ``t``."""
        hyper = {k: v for k, v in self.hyper.items() if k != "lr"}
        hyper["lr"] = self.lr_at(t)
        if self.algorithm == "tiger":
            hyper["step"] = t
            hyper["role"] = self.roles[i] if self.roles else "weight"
        return hyper

    def with_(self, **changes: Any) -> Case:
        return replace(self, **changes)

    def describe(self) -> str:
        """A reproducing description: every input as hex floats."""
        def arr(a: np.ndarray) -> str:
            return "[" + ", ".join(float(x).hex() if np.isfinite(x) else repr(float(x))
                                   for x in np.asarray(a).reshape(-1)) + f"] shape {a.shape}"
        lines = [f"Case(algorithm={self.algorithm!r}, hyper={dict(self.hyper)!r}, "
                 f"param_dtype={self.param_dtype!r}, momentum_dtype={self.momentum_dtype!r}"
                 + (f", param_dtypes={self.param_dtypes!r}" if self.param_dtypes else "")
                 + (f", roles={self.roles!r}" if self.roles else "")
                 + (f", lrs={self.lrs!r}" if self.lrs else "")
                 + (", transposed=True" if self.transposed else "") + ")"]
        for i, p in enumerate(self.params):
            lines.append(f"  param[{i}] = {arr(p)}")
            if self.exp_avgs is not None:
                lines.append(f"  exp_avg[{i}] = {arr(self.exp_avgs[i])}")
        for t, step in enumerate(self.grads):
            for i, g in enumerate(step):
                lines.append(f"  grad[step {t}][{i}] = {arr(g)}")
        return "\n".join(lines)


@dataclass
class Trace:
    """What a target stored: ``params[t][i]`` / ``momenta[t][i]`` after ``t`` steps (``t = 0``:
    the initial values), float64 arrays of the stored values; ``momenta[t]`` is ``None`` where the
    adapter cannot see the momentum. ``grads_intact``: no step modified a gradient."""

    params: list[list[np.ndarray]]
    momenta: list[list[np.ndarray] | None]
    grads_intact: bool = True
    notes: list[str] = field(default_factory=list)


class Adapter(Protocol):
    """Drives one implementation through a :class:`Case`."""

    kind: str

    def run(self, case: Case) -> Trace:
        """Run every step of ``case`` on a fresh instance."""
        ...


# ------------------------------------------------------------------------------------- torch

def torch_dtype(name: str) -> Any:
    import torch

    return {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
            "bfloat16": torch.bfloat16}[name]


def _default_torch_build(algorithm: str) -> Callable[..., Any]:
    """The suite's constructor convention for ``algorithm`` (extra ``kwargs`` passed through)."""
    def build(cls: Any, params: Any, hyper: Mapping[str, Any], **kwargs: Any) -> Any:
        wd = hyper.get("weight_decay", 0.0 if algorithm != "tiger" else 0.01)
        if algorithm == "lion":
            return cls(params, lr=hyper["lr"], betas=(hyper.get("beta1", 0.9),
                                                      hyper.get("beta2", 0.99)),
                       weight_decay=wd, **kwargs)
        if algorithm == "signum":
            return cls(params, lr=hyper["lr"], momentum=hyper.get("beta", 0.9), weight_decay=wd,
                       **kwargs)
        return cls(params, lr=hyper["lr"], beta=hyper.get("beta", 0.965), weight_decay=wd,
                   accumulation_steps=hyper.get("accumulation_steps", 1), **kwargs)
    return build


def stored_values(t: Any) -> np.ndarray:
    """A tensor's stored values as a float64 array (every float dtype converts exactly)."""
    import torch

    return t.detach().to(torch.float64).cpu().numpy().copy()


@dataclass
class TorchOptimizer:
    """A ``torch.optim.Optimizer`` class as a target.

    ``build(cls, param_groups, hyper)`` constructs it (default: the suite's constructor
    convention); ``momentum_key`` names the state entry holding the momentum (``None``: not
    observable); ``groups(params, case)`` makes the param groups (default: one group, or one
    group per tensor with a ``role`` key for Tiger); ``kwargs`` are passed to every construction
    (e.g. ``{"foreach": True}``).
    """

    cls: Any
    build: Callable[..., Any] | None = None
    momentum_key: str | None = "exp_avg"
    role_key: str | None = "role"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "torch optimizer class"

    def _groups(self, params: list[Any], case: Case) -> list[dict[str, Any]]:
        if case.algorithm == "tiger" and self.role_key and case.roles:
            return [{"params": [p], self.role_key: r}
                    for p, r in zip(params, case.roles, strict=True)]
        return [{"params": params}]

    def new(self, case: Case) -> tuple[Any, list[Any]]:
        """A fresh optimizer over fresh parameters holding ``case.params``."""
        import torch

        params = []
        for i, value in enumerate(case.params):
            t = torch.tensor(value, dtype=torch.float64).to(torch_dtype(case.dtype_of(i)))
            if case.transposed and t.dim() == 2:
                t = t.t().contiguous().t()
            params.append(torch.nn.Parameter(t))
        build = self.build or _default_torch_build(case.algorithm)
        hyper = {**case.hyper, "lr": case.lr_at(0) if case.steps else case.hyper["lr"]}
        opt = build(self.cls, self._groups(params, case), hyper, **self.kwargs)
        if case.momentum_dtype is not None:
            if "momentum_dtype" not in opt.defaults:
                raise AdapterError(f"momentum_dtype={case.momentum_dtype} requested but the "
                                   "optimizer has no momentum_dtype option")
            for group in opt.param_groups:
                group["momentum_dtype"] = torch_dtype(case.momentum_dtype)
        return opt, params

    def step_once(self, opt: Any, params: list[Any], grads: Sequence[np.ndarray],
                  lr: float) -> list[Any]:
        """One ``opt.step()`` at learning rate ``lr`` with ``grads`` (stored in each parameter's
        dtype) as the gradients; returns the gradient tensors handed to the step."""
        import torch

        self.set_lr(opt, lr)
        tensors = [torch.tensor(g, dtype=torch.float64).to(p.dtype)
                   for g, p in zip(grads, params, strict=True)]
        for p, g in zip(params, tensors, strict=True):
            p.grad = g
        opt.step()
        return tensors

    def set_lr(self, opt: Any, lr: float) -> None:
        for group in opt.param_groups:
            group["lr"] = lr

    def momenta(self, opt: Any, params: list[Any]) -> list[np.ndarray] | None:
        if self.momentum_key is None:
            return None
        out = []
        for p in params:
            state = opt.state.get(p, {})
            if self.momentum_key not in state:
                return None
            out.append(stored_values(state[self.momentum_key]))
        return out

    def inject_momenta(self, opt: Any, params: list[Any], values: Sequence[np.ndarray]) -> None:
        """Overwrite the momenta after a first zero step (``lr = 0``, zero gradients)."""
        import torch

        if self.momentum_key is None:
            raise AdapterError("initial momenta need an observable momentum (momentum_key)")
        for p, v in zip(params, values, strict=True):
            buf = opt.state[p][self.momentum_key]
            buf.copy_(torch.tensor(v, dtype=torch.float64).to(buf.dtype))

    def start(self, case: Case) -> tuple[Any, list[Any]]:
        """A new optimizer over ``case.params``, holding ``case.exp_avgs`` as its momenta when
        they are given (set by a first step that must not move θ, then overwritten)."""
        import torch

        opt, params = self.new(case)
        if case.exp_avgs is not None:
            # a step that must not move θ: lr 0 and no decay (lr-independent decay would move
            # it), zero gradients; then the momenta are overwritten
            decays = [g.get("weight_decay") for g in opt.param_groups]
            self.set_lr(opt, 0.0)
            for group in opt.param_groups:
                if "weight_decay" in group:
                    group["weight_decay"] = 0.0
            for p in params:
                p.grad = torch.zeros_like(p)
            opt.step()
            for group, wd in zip(opt.param_groups, decays, strict=True):
                if wd is not None:
                    group["weight_decay"] = wd
            if any(not np.array_equal(stored_values(p), v) for p, v in zip(params, case.params,
                                                                  strict=True)):
                raise AdapterError("a step with lr = 0 and zero gradients moved θ: cannot "
                                   "set initial momenta")
            self.inject_momenta(opt, params, case.exp_avgs)
        return opt, params

    def run(self, case: Case) -> Trace:
        import torch

        opt, params = self.start(case)
        trace = Trace([[stored_values(p) for p in params]],
                      [list(case.exp_avgs) if case.exp_avgs is not None
                       else [np.zeros(np.shape(v)) for v in case.params]])
        for t, step in enumerate(case.grads):
            copies = [torch.tensor(g, dtype=torch.float64).to(p.dtype)
                      for g, p in zip(step, params, strict=True)]
            grads = self.step_once(opt, params, step, case.lr_at(t))
            trace.grads_intact &= all(a.numel() == 0 or torch.equal(
                a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
                for a, b in zip(grads, copies, strict=True))
            trace.params.append([stored_values(p) for p in params])
            trace.momenta.append(self.momenta(opt, params))
        return trace

    def run_resumed(self, case: Case, at: int) -> Trace:
        """Run ``at`` steps, save ``state_dict()``, load it into a fresh instance over copies of
        the parameters, and run the remaining steps there."""
        import torch

        first = case.with_(grads=case.grads[:at], lrs=case.lrs[:at] if case.lrs else None)
        opt, params = self.start(first)  # with the case's initial momenta, as run() has
        for t, step in enumerate(first.grads):
            self.step_once(opt, params, step, first.lr_at(t))
        saved = opt.state_dict()
        rest = case.with_(params=tuple(stored_values(p) for p in params), grads=case.grads[at:],
                          lrs=case.lrs[at:] if case.lrs else None, exp_avgs=None)
        opt2, params2 = self.new(rest)
        for p2, p in zip(params2, params, strict=True):
            with torch.no_grad():
                p2.copy_(p)
        opt2.load_state_dict(saved)
        trace = Trace([[stored_values(p) for p in params2]], [self.momenta(opt2, params2)])
        for t, step in enumerate(rest.grads):
            self.step_once(opt2, params2, step, rest.lr_at(t))
            trace.params.append([stored_values(p) for p in params2])
            trace.momenta.append(self.momenta(opt2, params2))
        return trace


# ------------------------------------------------------------------------------------- optax

def _find_mu(state: Any) -> Any:
    """The momentum pytree inside an optax state: the first ``mu`` field found."""
    if hasattr(state, "mu"):
        return state.mu
    if isinstance(state, (tuple, list)):
        for s in state:
            found = _find_mu(s)
            if found is not None:
                return found
    if hasattr(state, "inner_state"):
        return _find_mu(state.inner_state)
    return None


@dataclass
class Optax:
    """An optax-style ``GradientTransformation`` factory as a target.

    ``factory(case, learning_rate)`` returns the transformation for ``case`` (read its
    ``hyper``); ``learning_rate`` is the case's lr, or a schedule (a callable of the step count)
    when the lr changes per step.
    Parameters are a list of arrays; updates are applied with ``optax.apply_updates``.
    """

    factory: Callable[..., Any]
    kind: str = "optax GradientTransformation"

    def run(self, case: Case) -> Trace:
        import jax
        import jax.numpy as jnp
        import optax

        if case.transposed:
            raise AdapterError("JAX arrays have no memory layout to vary")
        lrs = jnp.asarray([case.lr_at(t) for t in range(max(case.steps, 1))], dtype=jnp.float64
                          if jax.config.jax_enable_x64 else jnp.float32)
        schedule = (lambda count: lrs[jnp.minimum(count, len(lrs) - 1)]) \
            if case.lrs is not None else case.hyper["lr"]
        tx = self.factory(case, schedule)
        params = [jnp.asarray(p, dtype=case.dtype_of(i)) for i, p in enumerate(case.params)]
        state = tx.init(params)
        if case.exp_avgs is not None:
            raise AdapterError("this optax adapter cannot set initial momenta")
        trace = Trace([[np.asarray(p, dtype=np.float64) for p in params]],
                      [[np.zeros(np.shape(v)) for v in case.params]])
        update = jax.jit(tx.update)
        for step in case.grads:
            grads = [jnp.asarray(g, dtype=p.dtype) for g, p in zip(step, params, strict=True)]
            updates, state = update(grads, state, params)
            params = optax.apply_updates(params, updates)
            trace.params.append([np.asarray(p.astype(jnp.float32) if p.dtype == jnp.bfloat16
                                            else p, dtype=np.float64) for p in params])
            mu = _find_mu(state)
            trace.momenta.append(None if mu is None else
                                 [np.asarray(m.astype(jnp.float32) if m.dtype == jnp.bfloat16
                                             else m, dtype=np.float64) for m in mu])
        return trace


# -------------------------------------------------------------------------------- functional

@dataclass
class Functional:
    """A step function with the spec's signature as a target:
    ``fn(param, grad, exp_avg, **hyper) -> (new_param, new_exp_avg)`` on float64 NumPy arrays
    holding values of the case's dtypes (the function may compute in any precision; its outputs
    are rounded into the storage dtypes here, as a store would)."""

    fn: Callable[..., tuple[Any, Any]]
    kind: str = "functional step"

    def run(self, case: Case) -> Trace:
        params = [np.asarray(p, dtype=np.float64).copy() for p in case.params]
        momenta = ([np.asarray(m, dtype=np.float64).copy() for m in case.exp_avgs]
                   if case.exp_avgs is not None else [np.zeros(np.shape(p)) for p in params])
        trace = Trace([[p.copy() for p in params]], [[m.copy() for m in momenta]])
        for t, step in enumerate(case.grads):
            for i, g in enumerate(step):
                g_in = np.asarray(g, dtype=np.float64).copy()
                p, m = self.fn(params[i], g_in, momenta[i], **case.spec_hyper(t, i))
                trace.grads_intact &= bool(np.array_equal(g_in, g, equal_nan=True))
                mdt = case.momentum_dtype or case.dtype_of(i)
                params[i] = round_to(np.asarray(p, dtype=np.float64), case.dtype_of(i))
                momenta[i] = round_to(np.asarray(m, dtype=np.float64), mdt)
            trace.params.append([p.copy() for p in params])
            trace.momenta.append([m.copy() for m in momenta])
        return trace


# ------------------------------------------------------------------------------------ target

@dataclass
class Target:
    """An implementation to check: a name, the algorithm it implements, how to drive it, and
    its declared profile."""

    name: str
    algorithm: str
    adapter: Any
    profile: Profile = field(default_factory=Profile)
    version: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")


def _import_attr(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target must be 'package.module:Attr', got {spec!r}")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def resolve(spec: str, algorithm: str, profile: Profile | None = None) -> Target:
    """A target from ``"package.module:Attr"``: a ``torch.optim.Optimizer`` subclass becomes a
    :class:`TorchOptimizer`, any other callable a :class:`Functional` step (an optax factory
    needs an explicit :class:`Optax` adapter: its signature cannot be told from outside)."""
    obj = _import_attr(spec)
    adapter: Any
    try:
        import torch

        is_optimizer = isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
    except ImportError:
        is_optimizer = False
    if is_optimizer:
        adapter = TorchOptimizer(obj)
    elif callable(obj):
        adapter = Functional(obj)
        # a step function has no memory layout and no state to save
        profile = profile or Profile(capabilities=frozenset(CAPABILITIES)
                                     - {"state_dict", "noncontiguous"})
    else:
        raise ValueError(f"{spec} is neither a torch optimizer class nor a callable")
    return Target(spec, algorithm, adapter, profile or Profile(),
                  installed_version(spec.partition(":")[0]))


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    from importlib import metadata

    return metadata.packages_distributions()


def installed_version(module: str) -> str:
    """The installed distribution version of the package that provides ``module`` ("" if
    unknown)."""
    from importlib import metadata

    top = module.split(".")[0]
    for dist in _distributions().get(top, [top]):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return ""
