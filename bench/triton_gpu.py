"""Benchmark of the fused multi-tensor Triton kernels (lionspec.impls.triton) on a CUDA device.

    python bench/triton_gpu.py [--models gpt2-small,1b] [--dtypes float32,bfloat16] [--iters 20]

For GPT-2 small (124M parameters, shapes from ``bench/_shapes.py``) and a ~1B-parameter GPT-style
model, per storage dtype: milliseconds per optimizer step (median of CUDA-event timings), achieved
GB/s (bytes that must move: Lion/SIGNUM read θ, g, m and write θ, m; Tiger also reads θ and g in
its reduction pass; AdamW reads θ, g, m, v and writes θ, m, v) against the measured
device-to-device copy bandwidth, and kernel launches per step (torch.profiler: CUDA kernels,
memsets and copies of one step). Side by side: this package's Lion / SIGNUM / Tiger, a torch
``_foreach`` Lion (written below), the same Lion ``torch.compile``d, lion-pytorch's Triton path
(if installed) and ``torch.optim.AdamW(fused=True)``. Prints a table; asserts nothing.

Without CUDA it prints why and exits with status 2 (nothing was measured).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shapes import gpt2_small_shapes


def billion_shapes() -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, Tiger role) of a GPT-style model with d = 2048, 18 layers, vocab 50257:
    1,013,573,632 parameters (18·(12·d² + 13·d) + (50257 + 2048)·d + 2·d)."""
    d, layers, vocab, ctx = 2048, 18, 50257, 2048
    shapes = [("wte", (vocab, d), "embedding"), ("wpe", (ctx, d), "embedding")]
    for i in range(layers):
        shapes += [(f"h{i}.{n}", s, r) for n, s, r in [
            ("ln_1.weight", (d,), "scale"), ("ln_1.bias", (d,), "bias"),
            ("attn.c_attn.weight", (d, 3 * d), "weight"), ("attn.c_attn.bias", (3 * d,), "bias"),
            ("attn.c_proj.weight", (d, d), "weight"), ("attn.c_proj.bias", (d,), "bias"),
            ("ln_2.weight", (d,), "scale"), ("ln_2.bias", (d,), "bias"),
            ("mlp.c_fc.weight", (d, 4 * d), "weight"), ("mlp.c_fc.bias", (4 * d,), "bias"),
            ("mlp.c_proj.weight", (4 * d, d), "weight"), ("mlp.c_proj.bias", (d,), "bias")]]
    return [*shapes, ("ln_f.weight", (d,), "scale"), ("ln_f.bias", (d,), "bias")]


MODELS = {"gpt2-small": gpt2_small_shapes, "1b": billion_shapes}


def foreach_lion(params, grads, exp_avgs, *, lr, beta1, beta2, weight_decay):
    """Reference torch ``_foreach`` Lion (decoupled decay; ``torch.sign``: NaN gives 0)."""
    import torch

    torch._foreach_mul_(params, 1.0 - lr * weight_decay)
    upd = torch._foreach_mul(exp_avgs, beta1)
    torch._foreach_add_(upd, grads, alpha=1.0 - beta1)
    torch._foreach_sign_(upd)
    torch._foreach_add_(params, upd, alpha=-lr)
    torch._foreach_mul_(exp_avgs, beta2)
    torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta2)


def _time(fn: Callable[[], None], iters: int) -> float:
    import torch

    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _launches(fn: Callable[[], None]) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in GB/s (read + write counted)."""
    import torch

    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = _time(lambda: dst.copy_(src), 20)
    return 2 * nbytes / ms / 1e6


def bench_model(name: str, dtype_name: str, iters: int, peak: float) -> list[tuple]:
    import torch

    import lionspec.impls.triton as T

    dtype = getattr(torch, dtype_name)
    shapes = MODELS[name]()
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=dtype) * 0.02)
              for _, s, _ in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    grads = [p.grad for p in params]
    ms = [torch.zeros_like(p) for p in params]
    roles = [r for _, _, r in shapes]
    data = [p.data for p in params]
    n = sum(p.numel() for p in params)
    esz = params[0].element_size()
    hyper = dict(lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.1)
    rows = []

    def row(label: str, fn: Callable[[], None], nbytes: int) -> None:
        t = _time(fn, iters)
        gbs = nbytes / t / 1e6
        rows.append((name, dtype_name, label, t, gbs, 100 * gbs / peak, _launches(fn)))

    lion_bytes = 5 * n * esz
    step = {"t": 0}

    def tiger() -> None:
        T.tiger_step_(data, grads, ms, lr=1e-3, step=step["t"], roles=roles)
        step["t"] += 1

    row("triton lion_step_", lambda: T.lion_step_(data, grads, ms, **hyper), lion_bytes)
    row("triton signum_step_",
        lambda: T.signum_step_(data, grads, ms, lr=1e-4, beta=0.9, weight_decay=0.1), lion_bytes)
    row("triton tiger_step_", tiger, 7 * n * esz)
    with torch.no_grad():
        row("torch _foreach Lion", lambda: foreach_lion(data, grads, ms, **hyper), lion_bytes)
        try:
            compiled = torch.compile(foreach_lion)
            row("torch.compile Lion", lambda: compiled(data, grads, ms, **hyper), lion_bytes)
        except (RuntimeError, ImportError) as exc:  # inductor unavailable or failing here
            print(f"torch.compile Lion skipped: {exc}", file=sys.stderr)
    try:
        from lion_pytorch import Lion as LionPytorch

        opt = LionPytorch(params, lr=1e-4, weight_decay=0.1, use_triton=True)
        row("lion-pytorch (triton)", opt.step, lion_bytes)
    except (ImportError, RuntimeError, TypeError) as exc:
        print(f"lion-pytorch triton path skipped: {exc}", file=sys.stderr)
    adamw = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1, fused=True)
    row("torch AdamW(fused=True)", adamw.step, 7 * n * esz)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2-small,1b")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args(argv)
    try:
        import torch
        import triton
    except ImportError as exc:
        print(f"bench/triton_gpu.py: needs torch and triton ({exc}); nothing measured",
              file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench/triton_gpu.py: no CUDA device; nothing measured (run it on a GPU machine)",
              file=sys.stderr)
        return 2
    peak = copy_bandwidth()
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}, triton "
          f"{triton.__version__}; device-to-device copy: {peak:.0f} GB/s")
    rows = []
    for model in args.models.split(","):
        for dt in args.dtypes.split(","):
            rows += bench_model(model, dt, args.iters, peak)
            torch.cuda.empty_cache()
    head = ("model", "dtype", "implementation", "ms/step", "GB/s", "% copy", "launches")
    print(f"{head[0]:<11} {head[1]:<9} {head[2]:<24} {head[3]:>8} {head[4]:>8} {head[5]:>7} "
          f"{head[6]:>8}")
    for model, dt, label, t, gbs, pct, launches in rows:
        print(f"{model:<11} {dt:<9} {label:<24} {t:>8.3f} {gbs:>8.0f} {pct:>6.0f}% {launches:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
