"""Lion, SIGNUM and Tiger as fused multi-tensor Triton kernels, updating tensors in place.

Each step reads θ, g, m once and writes θ, m once, in float32 arithmetic with one rounding into
each storage dtype (float32, float16, bfloat16; the momentum may differ from the parameter), and
launches O(1) kernels however many tensors it is given: one per (θ, g, m) dtype combination,
through a cached table of int64 data pointers and a block → tensor map. Hyperparameters live in a
small device tensor, so a new learning rate never recompiles. No autotuning (fixed block size).

CUDA tensors run compiled kernels; CPU tensors run the same kernels in Triton's interpreter (how
CI exercises them), whatever ``TRITON_INTERPRET`` says. See ``docs/triton.md``.

>>> import torch
>>> from lionspec.impls.triton import lion_step_
>>> params = [torch.ones(5), torch.ones(3, 2)]
>>> grads = [torch.full((5,), 0.5), -torch.ones(3, 2)]
>>> exp_avgs = [torch.zeros(5), torch.zeros(3, 2)]
>>> lion_step_(params, grads, exp_avgs, lr=0.25)   # kernel launches made
1
>>> params[0][0].item(), params[1][0, 0].item()
(0.75, 1.25)
"""

from ._api import (
    DEFAULT_BLOCK,
    NAN_CHECKS,
    NAN_SCOPES,
    lion_step_,
    signum_step_,
    tiger_step_,
)
from ._launch import DTYPES, bf16_faithful

__all__ = ["DEFAULT_BLOCK", "DTYPES", "NAN_CHECKS", "NAN_SCOPES", "bf16_faithful", "lion_step_",
           "signum_step_", "tiger_step_"]
