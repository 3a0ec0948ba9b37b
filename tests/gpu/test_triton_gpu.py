"""On a CUDA device: the compiled Triton kernels (lionspec.impls.triton) against the spec, for
every storage dtype including bfloat16, judged per element with the derived bounds — the same
checks as tests/impls/triton (which run in the interpreter, fp32/fp16 only), at larger sizes and
the default block size, with FMA contraction as Triton compiles by default.

Runs under ``tox -e gpu`` (``python -m pytest -m gpu -rs``); skips cleanly without CUDA or triton.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

from tests.impls.triton._helpers import run_and_judge  # noqa: E402

SHAPES = [(96, 70), (1000,), (3, 5, 4), (2049,)]
DTYPE_CASES = [("float32", "float32"), ("float16", "float16"), ("float16", "float32"),
               ("bfloat16", "bfloat16"), ("bfloat16", "float32")]


@pytest.mark.parametrize(("dtype", "mdt"), DTYPE_CASES, ids=[f"{d}-{m}" for d, m in DTYPE_CASES])
@pytest.mark.parametrize("algorithm", ["lion", "signum", "tiger"])
@pytest.mark.parametrize("block", [64, 1024])
def test_compiled_kernels_conform(algorithm, dtype, mdt, block):
    run_and_judge(algorithm, dtype, mdt, shapes=SHAPES, steps=3, block=block, device="cuda")


@pytest.mark.parametrize(("dtype", "mdt"), DTYPE_CASES, ids=[f"{d}-{m}" for d, m in DTYPE_CASES])
@pytest.mark.parametrize("k", [1, 3])
def test_compiled_tiger_roles_and_windows_conform(dtype, mdt, k):
    shapes = [(60, 40), (90, 5), (70, 130), (333,), (333,)]
    roles = ["embedding", "embedding", "weight", "bias", "scale"]
    run_and_judge("tiger", dtype, mdt, shapes=shapes, roles=roles, steps=2 * k, block=1024,
                  hyper=dict(accumulation_steps=k), device="cuda")


@pytest.mark.parametrize("algorithm", ["lion", "signum", "tiger"])
def test_compiled_nan_and_inf_gradients_conform(algorithm):
    from tests.impls.triton.test_spec import _special_grads

    shapes = [(40, 80), (700,)]
    hyper = dict(accumulation_steps=2) if algorithm == "tiger" else None
    run_and_judge(algorithm, "float32", "float32", shapes=shapes, steps=3,
                  grads=_special_grads(shapes), hyper=hyper, device="cuda",
                  roles=["weight", "scale"] if algorithm == "tiger" else None)


def test_bf16_self_check_passes_on_cuda():
    from lionspec.impls.triton import bf16_faithful

    assert bf16_faithful(torch.device("cuda"))


def test_a_broken_sign_is_caught_on_cuda(monkeypatch, tmp_path):
    import triton

    from lionspec.impls.triton import _launch
    from tests.impls.triton.test_spec import BROKEN, _broken_step_kernel, _special_grads

    name = "sign shortcut where(c > 0, 1, -1)"
    fn = _broken_step_kernel(tmp_path, *BROKEN[name]).fn
    table = dict(_launch.kernels(torch.device("cuda")))
    table["step"] = triton.JITFunction(fn)
    monkeypatch.setitem(_launch._KERNELS, "jit", table)
    shapes = [(4, 8), (70,)]
    with pytest.raises(AssertionError, match="observed"):
        run_and_judge("lion", "float32", "float32", shapes=shapes, steps=3,
                      grads=_special_grads(shapes), device="cuda")
