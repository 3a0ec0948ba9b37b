"""The Triton tests run on the CPU through Triton's interpreter.

``TRITON_INTERPRET=1`` is set (setdefault: an explicit value wins) before triton is imported,
except on a machine with a CUDA device: there the same pytest run may also compile the kernels for
``tests/gpu/test_triton_gpu.py``, and triton reads the variable lazily during compilation. The
package does not need it either way: CPU tensors always run through the interpreter and the kernels
call no triton standard-library jit function that would require it.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
