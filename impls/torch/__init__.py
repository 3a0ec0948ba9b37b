"""Lion, Signum and Tiger as ``torch.optim`` optimizers that follow lionspec's spec.

>>> import torch
>>> from lionspec.impls.torch import Lion, Signum, Tiger, tiger_param_groups
>>> model = torch.nn.Linear(3, 2)
>>> opt = Tiger(tiger_param_groups(model), lr=1e-3)
>>> model(torch.ones(1, 3)).sum().backward()
>>> opt.step()

Three code paths evaluate one math module (``_math``): a for-loop over tensors, ``foreach``
(``torch._foreach_*``, bit-identical to the for-loop) and ``fused``: on CPU a native C kernel
(``_native``: one call per step for all tensors, built once with the system compiler and cached
on disk; ``torch.compile`` where there is no compiler), on CUDA the Triton kernels. Importing
this package imports torch only (never triton or inductor); ``fused=True`` builds or loads its
kernel at the first step. See ``docs/torch.md``.
"""

from ._optimizer import SignOptimizer
from .lion import Lion
from .param_groups import role_of, tiger_param_groups
from .signum import Signum
from .tiger import Tiger

__all__ = ["Lion", "SignOptimizer", "Signum", "Tiger", "role_of", "tiger_param_groups"]
