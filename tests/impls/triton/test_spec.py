"""lionspec.impls.triton against lionspec.spec, per element, with the derived bounds.

The kernels run on the CPU in Triton's interpreter (float32 and float16 storage; bfloat16 only
where the interpreter passes the self-check, i.e. on a GPU: see tests/gpu/test_triton_gpu.py).
Lists of tensors of different sizes go through one call (several blocks per tensor: ``block=64``);
the inputs are hard (near-cancelling decision variables, zeros, signed zeros, subnormals, ±Inf,
NaN); every step of every tensor is judged by :func:`lionspec.conformance.verdict.judge_step`
from the implementation's own exact inputs. Deliberately broken kernels show the checks can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from lionspec.impls.triton import _launch  # noqa: E402

from ._helpers import run_and_judge  # noqa: E402

SHAPES = [(12, 11), (7,), (130,), (3, 5, 4)]
DTYPE_CASES = [("float32", "float32"), ("float16", "float16"), ("float16", "float32")]


@pytest.mark.parametrize(("dtype", "mdt"), DTYPE_CASES, ids=[f"{d}-{m}" for d, m in DTYPE_CASES])
@pytest.mark.parametrize("algorithm", ["lion", "signum", "tiger"])
def test_every_kernel_and_dtype_conforms(algorithm, dtype, mdt):
    run_and_judge(algorithm, dtype, mdt, shapes=SHAPES, steps=3)


@pytest.mark.parametrize("k", [1, 3])
def test_tiger_roles_and_windows_conform(k):
    # all four roles in one call; the embedding's rows (length 40, and 5) straddle 64-element
    # blocks and share blocks, so the per-row sums cross program boundaries
    shapes = [(6, 40), (9, 5), (7, 13), (33,), (33,)]
    roles = ["embedding", "embedding", "weight", "bias", "scale"]
    run_and_judge("tiger", "float32", "float32", shapes=shapes, roles=roles, steps=2 * k,
                  hyper=dict(accumulation_steps=k))


def test_tiger_fp16_roles_conform():
    shapes = [(6, 40), (7, 13), (33,), (33,)]
    run_and_judge("tiger", "float16", "float32", shapes=shapes,
                  roles=["embedding", "weight", "bias", "scale"], steps=2,
                  hyper=dict(accumulation_steps=2))


def _special_grads(shapes, steps=3, nan_at=1):
    grads = []
    for t in range(steps):
        gs = []
        for shape in shapes:
            g = torch.full(shape, 1e-3) * (t + 1)
            flat = g.view(-1)
            flat[0], flat[1] = float("inf"), float("-inf")
            flat[2:4] = 0.0
            if t == nan_at:
                flat[5] = float("nan")
            gs.append(g)
        grads.append(gs)
    return grads


@pytest.mark.parametrize("algorithm", ["lion", "signum", "tiger"])
def test_nan_and_inf_gradients_conform(algorithm):
    shapes = [(4, 8), (70,)]
    hyper = dict(accumulation_steps=2) if algorithm == "tiger" else None
    run_and_judge(algorithm, "float32", "float32", shapes=shapes, steps=3,
                  grads=_special_grads(shapes), hyper=hyper,
                  roles=["weight", "scale"] if algorithm == "tiger" else None)


@pytest.mark.parametrize(("algorithm", "hyper"), [
    ("lion", dict(lr=0.0)),                       # θ untouched even where g is NaN
    ("lion", dict(beta1=0.0, beta2=0.0)),         # β·m terms absent (m is ±Inf after a step)
    ("lion", dict(lr=2.0, weight_decay=0.5)),     # keep == 0: the θ term is absent
    ("signum", dict(beta=0.0, weight_decay=0.0)),  # signSGD, keep == 1
    ("tiger", dict(lr=0.0)),                      # α == 0: θ moves only by the NaN rule
    ("tiger", dict(beta=0.0, weight_decay=0.0)),
])
def test_zero_coefficients_remove_their_terms(algorithm, hyper):
    shapes = [(4, 8)]
    run_and_judge(algorithm, "float32", "float32", shapes=shapes, steps=3,
                  grads=_special_grads(shapes), hyper=hyper)


def test_maximize_negates_the_gradient():
    from lionspec.impls.triton import lion_step_

    p, m = torch.ones(4), torch.zeros(4)
    lion_step_([p], [torch.tensor([1.0, -1.0, 0.0, -0.0])], [m], lr=0.25, maximize=True)
    assert p.tolist() == [1.25, 0.75, 1.0, 1.0]
    w2 = float(np.float32(1.0 - 0.99))  # w2 formed in float64, rounded once to float32
    assert m.tolist() == [-w2, w2, 0.0, 0.0]


# --- Tiger's NaN-rule options: judged as the spec's variations --------------------------------

def _as_nan(g: np.ndarray) -> np.ndarray:
    g = g.copy()
    g.reshape(-1)[0] = np.nan
    return g


def test_tiger_global_nan_flag_shrinks_every_tensor():
    # only tensor 0 has a NaN gradient at step 1; with nan_scope="global" every tensor (both
    # dtype groups, all roles) takes the rule: judged as if its own gradient held a NaN
    shapes = [(4, 8), (70,), (5, 6)]
    grads = [[torch.full(s, 1e-3) for s in shapes] for _ in range(3)]
    grads[1][0][1, 1] = float("nan")
    run_and_judge("tiger", "float32", "float32", shapes=shapes, steps=3, grads=grads,
                  roles=["weight", "scale", "embedding"], hyper=dict(nan_scope="global"),
                  judge_grad=lambda t, i, g: _as_nan(g) if t == 1 else g)


def test_tiger_nonfinite_check_reacts_to_inf():
    shapes = [(4, 8), (70,)]
    grads = [[torch.full(s, 1e-3) for s in shapes] for _ in range(2)]
    grads[1][1][3] = float("-inf")  # tensor 1 only, step 1
    run_and_judge("tiger", "float32", "float32", shapes=shapes, steps=2, grads=grads,
                  roles=["weight", "bias"], hyper=dict(nan_check="nonfinite"),
                  judge_grad=lambda t, i, g: _as_nan(g) if (t, i) == (1, 1) else g)


# --- the checks can fail: deliberately broken kernels --------------------------------------------

BROKEN = {
    "sign shortcut where(c > 0, 1, -1)": (
        "s = tl.where(c > 0, 1.0, tl.where(c < 0, -1.0, tl.where(c == c, 0.0, c)))",
        "s = tl.where(c > 0, 1.0, -1.0)"),
    "Lion interpolates with beta2 (SIGNUM order)": (
        "c = tl.load(hp + 1) * m + tl.load(hp + 2) * g",
        "c = tl.load(hp + 3) * m + tl.load(hp + 4) * g"),
    "coupled decay: lr*lambda*theta added to the sign step": (
        "y = x * tl.load(hp + 5) - step",
        "y = x - (step + (1.0 - tl.load(hp + 5)) * x * 2.0)"),
    "Tiger RMS without the 1/sqrt(n)": (
        "rms = (tl.sqrt(ssq) / tl.load(sqn + i)).to(tl.float32)",
        "rms = tl.sqrt(ssq).to(tl.float32)"),
    "Tiger moves theta on every micro-step": (
        "if (tl.load(hp + 9) != 0) & (tl.load(hp + 6) == 0):", "if tl.load(hp + 6) == 0:"),
    "Tiger decays the momentum on every micro-step": (
        "if tl.load(hp + 8) != 0:  # first", "if True:  # first"),
}


def _broken_step_kernel(tmp_path, old: str, new: str):
    import importlib.util
    import inspect

    from triton.runtime.interpreter import InterpretedFunction

    from lionspec.impls.triton import _kernels

    source = inspect.getsource(_kernels)
    assert source.count(old) == 1, old
    path = tmp_path / "broken_kernels.py"
    path.write_text(source.replace(old, new), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("broken_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return InterpretedFunction(module.step_kernel)


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_kernel_is_caught(monkeypatch, tmp_path, name):
    kernel = _broken_step_kernel(tmp_path, *BROKEN[name])
    table = dict(_launch.kernels(torch.device("cpu")))
    table["step"] = kernel
    monkeypatch.setitem(_launch._KERNELS, "interpret", table)
    algorithm = "tiger" if name.startswith("Tiger") else "lion"
    hyper = dict(accumulation_steps=2) if "micro-step" in name else None
    shapes = [(4, 8), (70,)]
    grads = _special_grads(shapes) if "sign" in name else None
    # the RMS roles' η is 0 off the last micro-step (no sum of squares): use the bias role there
    roles = ["bias", "scale"] if "moves theta" in name else None
    with pytest.raises(AssertionError, match="observed"):
        run_and_judge(algorithm, "float32", "float32", shapes=shapes, steps=3, grads=grads,
                      hyper=hyper, roles=roles)
