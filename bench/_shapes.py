"""Parameter shapes shared by the benchmarks in ``bench/`` (imported, not run)."""

from __future__ import annotations


def gpt2_small_shapes() -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, Tiger role) of GPT-2 small's 124,439,808 parameters (tied embeddings)."""
    d, layers, vocab, ctx = 768, 12, 50257, 1024
    shapes = [("wte", (vocab, d), "embedding"), ("wpe", (ctx, d), "embedding")]
    for i in range(layers):
        layer = [
            ("ln_1.weight", (d,), "scale"), ("ln_1.bias", (d,), "bias"),
            ("attn.c_attn.weight", (d, 3 * d), "weight"), ("attn.c_attn.bias", (3 * d,), "bias"),
            ("attn.c_proj.weight", (d, d), "weight"), ("attn.c_proj.bias", (d,), "bias"),
            ("ln_2.weight", (d,), "scale"), ("ln_2.bias", (d,), "bias"),
            ("mlp.c_fc.weight", (d, 4 * d), "weight"), ("mlp.c_fc.bias", (4 * d,), "bias"),
            ("mlp.c_proj.weight", (4 * d, d), "weight"), ("mlp.c_proj.bias", (d,), "bias"),
        ]
        shapes += [(f"h{i}.{name}", shape, role) for name, shape, role in layer]
    shapes += [("ln_f.weight", (d,), "scale"), ("ln_f.bias", (d,), "bias")]
    return shapes


def scaled_shapes(scale: float = 1.0) -> list[tuple[str, tuple[int, ...], str]]:
    """GPT-2 small's shapes with each tensor's first dimension scaled by ``scale`` (at least 1)."""
    return [(name, (max(1, int(shape[0] * scale)), *shape[1:]), role)
            for name, shape, role in gpt2_small_shapes()]
