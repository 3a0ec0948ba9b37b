"""A target's declared variation profile and capability table.

The *arithmetic* part (compute precision, evaluation form of c, storage roundings, ...) is not a
deviation: the spec allows any evaluation within the derived bounds, and the profile only tells
the suite which (tighter) bound applies. The *variations* part names the deviations from the
spec the target is known to implement (:data:`lionspec.spec.VARIATIONS`: ``decay:coupled``,
``sign0:-1``, ``nan:freeze``, ...); checks still judge against the spec and fail on them, but the
diagnosis names the declared variation first, and a runner may accept it (``--allow``).
The *capabilities* say what the suite may ask of the target (dtypes, momentum dtypes, state
dicts, ...); a check that needs a missing capability is skipped, with the reason.

>>> p = Profile(dtypes=("float32", "bfloat16"))   # compute="auto"
>>> p.arithmetic("bfloat16", None).compute, p.arithmetic("bfloat16", None).momentum_dtype
('float32', 'bfloat16')
>>> p.arithmetic("float64", None).compute   # float64 parameters are computed in float64
'float64'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lionspec.spec.bounds import C_FORMS

from .verdict import Arithmetic

__all__ = ["CAPABILITIES", "Profile"]

#: What a target may support. ``momentum``: its momentum is observable after each step;
#: ``inject_momentum``: the suite can set initial momenta; ``lr_change``: the learning rate can
#: change after construction; ``state_dict``: save and restore into a fresh instance;
#: ``noncontiguous``: parameters with a transposed memory layout; ``param_groups``: several
#: groups (mixed dtypes, Tiger roles); ``grad_check``: the gradient handed to a step can be
#: inspected afterwards; ``zero_size``: zero-size and 0-d tensors.
CAPABILITIES = ("momentum", "inject_momentum", "lr_change", "state_dict", "noncontiguous",
                "param_groups", "grad_check", "zero_size")

_ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Profile:
    """How a target evaluates a step, what it deviates in, and what it supports.

    * ``compute``: ``"auto"`` (float64 when the parameter or momentum is float64, else float32:
      what lionspec's torch optimizers do), ``"param"`` (in the parameter's own dtype, promoted
      with a different momentum dtype as array libraries promote), or a dtype name;
    * ``c_form``, ``param_form``, ``storage_roundings``, ``rms_summation_depth``: as
      :class:`~lionspec.conformance.verdict.Arithmetic`;
    * ``fma``, ``ftz``: known use of fused multiply-add / flush-to-zero (``None``: unknown;
      informational, the bounds already cover FMA contraction);
    * ``variations``: declared deviations (names of :data:`lionspec.spec.VARIATIONS`);
    * ``dtypes``: parameter dtypes accepted; ``momentum_dtypes``: momentum dtypes that can be
      chosen independently of the parameter's (empty: always the parameter's dtype);
    * ``capabilities``: a subset of :data:`CAPABILITIES`;
    * ``nan_policy``: "tensor" or "global" NaN scope for Tiger (informational).
    """

    compute: str = "auto"
    c_form: str = "universal"
    param_form: str = "universal"
    storage_roundings: int = 1
    rms_summation_depth: int | None = None
    fma: bool | None = None
    ftz: bool | None = None
    variations: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ("float32",)
    momentum_dtypes: tuple[str, ...] = ()
    capabilities: frozenset[str] = field(default_factory=lambda: frozenset(CAPABILITIES))

    def __post_init__(self) -> None:
        if self.c_form not in C_FORMS:
            raise ValueError(f"c_form must be one of {C_FORMS}, got {self.c_form!r}")
        if self.compute not in ("auto", "param", *_ALL_DTYPES):
            raise ValueError(f"compute must be 'auto', 'param' or one of {_ALL_DTYPES}, got "
                             f"{self.compute!r}")
        for name in (*self.dtypes, *self.momentum_dtypes):
            if name not in _ALL_DTYPES:
                raise ValueError(f"dtypes must be among {_ALL_DTYPES}, got {name!r}")
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; allowed: {CAPABILITIES}")
        if self.storage_roundings not in (1, 2):
            raise ValueError(f"storage_roundings must be 1 or 2, got {self.storage_roundings}")

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def compute_for(self, param_dtype: str, momentum_dtype: str | None) -> str:
        if self.compute == "param":  # the parameter's dtype, promoted with the momentum's
            if momentum_dtype is None or momentum_dtype == param_dtype:
                return param_dtype
            wide = [d for d in ("float64", "float32") if d in (param_dtype, momentum_dtype)]
            return wide[0] if wide else "float32"  # float16 with bfloat16: float32
        if self.compute == "auto":
            return "float64" if "float64" in (param_dtype, momentum_dtype) else "float32"
        return self.compute

    def arithmetic(self, param_dtype: str, momentum_dtype: str | None) -> Arithmetic:
        """The :class:`Arithmetic` the bounds use for these storage dtypes."""
        return Arithmetic(compute=self.compute_for(param_dtype, momentum_dtype),
                          param_storage=param_dtype,
                          momentum_storage=momentum_dtype or param_dtype,
                          c_form=self.c_form, param_form=self.param_form,
                          storage_roundings=self.storage_roundings,
                          rms_summation_depth=self.rms_summation_depth)
