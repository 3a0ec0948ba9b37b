"""Tiger param groups from an ``nn.Module``, by module type, with name-pattern overrides.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4),
...                             torch.nn.LayerNorm(4))
>>> [(g["role"], len(g["params"])) for g in tiger_param_groups(model, weight_decay=0.1)]
[('weight', 1), ('embedding', 1), ('bias', 2), ('scale', 1)]
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from lionspec.spec._validate import ROLES, check_role

__all__ = ["role_of", "tiger_param_groups"]

_AFFINE = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)
_NORMS: tuple[type, ...] = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase,
                            nn.LocalResponseNorm)
if hasattr(nn, "RMSNorm"):
    _NORMS = (*_NORMS, nn.RMSNorm)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def role_of(module: nn.Module, param_name: str) -> str:
    """Tiger role of ``module``'s own parameter ``param_name`` by the module's type.

    Linear/Bilinear/Conv: ``bias`` → "bias", the rest → "weight". LayerNorm, RMSNorm, GroupNorm,
    BatchNorm and InstanceNorm: ``weight`` → "scale", ``bias`` → "bias". Embedding(Bag):
    "embedding". Any other module: "bias" if the parameter's name contains "bias" (e.g.
    MultiheadAttention's ``in_proj_bias``, which is zero-initialised and would never move under
    the weight rule η = α·RMS(θ)), else "weight".
    """
    if isinstance(module, _NORMS):
        return "scale" if param_name == "weight" else "bias"
    if isinstance(module, _EMBEDDINGS):
        return "embedding"
    if isinstance(module, _AFFINE):
        return "bias" if param_name == "bias" else "weight"
    return "bias" if "bias" in param_name else "weight"


def tiger_param_groups(module: nn.Module, *, overrides: Mapping[str, str] | None = None,
                       **group_defaults: Any) -> list[dict[str, Any]]:
    """Param groups for :class:`~lionspec.impls.torch.Tiger`, one per role present.

    Each parameter (shared ones once, under their first name in ``module.named_modules()``
    order) gets the role :func:`role_of` gives it, unless a pattern of ``overrides`` matches
    its qualified name (``fnmatch``-style, case-sensitive, e.g. ``"*.pos_embed"``; the first
    matching pattern in the mapping's order wins). ``group_defaults`` (e.g. ``weight_decay``)
    are copied into every group. Groups come in the order weight, embedding, bias, scale, and
    groups without parameters are omitted.
    """
    patterns = dict(overrides or {})
    for pattern, role in patterns.items():
        check_role(role, f"overrides[{pattern!r}]")
    by_role: dict[str, list[torch.nn.Parameter]] = {role: [] for role in ROLES}
    seen: set[int] = set()
    for prefix, sub in module.named_modules():
        for name, p in sub.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{prefix}.{name}" if prefix else name
            role = next((r for pat, r in patterns.items() if fnmatchcase(full, pat)), None)
            by_role[role or role_of(sub, name)].append(p)
    return [{"params": ps, "role": role, **group_defaults}
            for role, ps in by_role.items() if ps]
