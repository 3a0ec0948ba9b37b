"""The lionspec reference spec: a float64 NumPy oracle of Lion, Tiger and SIGNUM.

Every sign decision equals the sign in exact arithmetic and every value is within two float64 ulps
of the exact result (``ORACLE_REL_ERR``/``ORACLE_ABS_ERR``); the oracle is itself checked against
an independent exact-rational oracle (:mod:`lionspec.spec.exact`). Inputs of any float dtype are
converted exactly to float64; results are new float64 arrays; inputs are never mutated.

>>> from lionspec.spec import lion_step
>>> p, m = lion_step([0.5, -0.5], [1.0, 0.0], [0.0, 0.0], lr=0.1)
>>> p.tolist(), m.tolist()
([0.4, -0.5], [0.010000000000000009, 0.0])

Modules: :mod:`~lionspec.spec.lion`, :mod:`~lionspec.spec.signum`, :mod:`~lionspec.spec.tiger`
(the algorithms), :mod:`~lionspec.spec.variations` (named deviations found in real code,
multi-tensor and trajectory helpers), :mod:`~lionspec.spec.formats` and :mod:`~lionspec.spec.bounds`
(floating-point formats and derived error bounds), and :mod:`~lionspec.spec.exact` (the exact
oracle; imported on demand, it needs mpmath).
"""

from . import bounds, formats
from ._accurate import ORACLE_ABS_ERR, ORACLE_REL_ERR
from ._validate import ROLES, SHRINK_CENTRE
from .lion import lion_interp, lion_step
from .signum import signum_momentum, signum_step
from .tiger import RMS_REL_ERR, rms, tiger_lr, tiger_momentum, tiger_step
from .variations import (
    NAN_POLICIES,
    VARIATIONS,
    Variation,
    lion_accumulated_step,
    step_tensors,
    trajectory,
)

__all__ = [
    "NAN_POLICIES",
    "ORACLE_ABS_ERR",
    "ORACLE_REL_ERR",
    "RMS_REL_ERR",
    "ROLES",
    "SHRINK_CENTRE",
    "VARIATIONS",
    "Variation",
    "bounds",
    "formats",
    "lion_accumulated_step",
    "lion_interp",
    "lion_step",
    "rms",
    "signum_momentum",
    "signum_step",
    "step_tensors",
    "tiger_lr",
    "tiger_momentum",
    "tiger_step",
    "trajectory",
]
