"""On a CUDA device: the hardware's float32 → float16/bfloat16 casts are the correctly rounded
conversions that :func:`lionspec.spec.formats.round_to` emulates (the bounds assume exactly that).

Runs under ``tox -e gpu``; skips cleanly where torch or CUDA is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

from lionspec.spec.formats import get_format, round_to  # noqa: E402


def _samples() -> np.ndarray:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    return x[np.isfinite(x)]


@pytest.mark.parametrize(("torch_dtype", "name"),
                         [("float16", "float16"), ("bfloat16", "bfloat16")])
def test_device_cast_is_round_to_nearest_even(torch_dtype, name):
    x = _samples()
    dev = torch.from_numpy(x).cuda().to(getattr(torch, torch_dtype)).float().cpu().numpy()
    want = round_to(x.astype(np.float64), get_format(name))
    same = (dev.astype(np.float64) == want) | (np.isnan(dev) & np.isnan(want))
    assert same.all(), f"{(~same).sum()} of {x.size} casts differ, e.g. {x[~same][:4]}"
