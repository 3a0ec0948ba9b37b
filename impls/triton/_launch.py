"""Launch machinery: kernel objects per device kind, cached pointer/size tables, hyperparameter
buffers, and the launches of one step.

A *plan* is built once per (device, block size, tensor list: data pointers, sizes, dtypes, rows,
roles, NaN scope) and cached (LRU, :data:`PLAN_CACHE_SIZE` entries): it holds, per dtype group, the
int64 table of the group's tensors, the int32 block → tensor map and the float64 √n per tensor, all
on the tensors' device, plus one float64 work buffer (Tiger's sums of squares, then its NaN flags
viewed as int32) and the float32 hyperparameter buffer. A step with an unchanged list makes no
host → device copy except a changed hyperparameter vector (12 floats, only when a value changed).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from . import _kernels as K

__all__ = ["DTYPES", "PLAN_CACHE_SIZE", "Plan", "bf16_faithful", "get_plan", "kernels",
           "launch", "launches_per_step"]

#: storage dtypes the kernels accept (θ, g and m independently)
DTYPES: dict[torch.dtype, Any] = {torch.float32: tl.float32, torch.float16: tl.float16,
                                  torch.bfloat16: tl.bfloat16}
PLAN_CACHE_SIZE = 16
_KERNELS: dict[str, dict[str, Any]] = {}
_PLANS: OrderedDict[tuple, Plan] = OrderedDict()
_BF16_OK: dict[str, bool] = {}


def kernels(device: torch.device) -> dict[str, Any]:
    """The kernel objects for ``device``: compiled (CUDA) or interpreted (CPU), whatever
    ``TRITON_INTERPRET`` says, so that one process can run both."""
    mode = "interpret" if device.type == "cpu" else "jit"
    if mode not in _KERNELS:
        wrap = InterpretedFunction if mode == "interpret" else triton.JITFunction
        _KERNELS[mode] = {"step": wrap(K.step_kernel), "reduce": wrap(K.reduce_kernel),
                          "check": wrap(K.check_kernel)}
    return _KERNELS[mode]


def bf16_faithful(device: torch.device) -> bool:
    """Does Triton on ``device`` load bfloat16, compute in float32 and round to nearest on store?

    The interpreter of triton 3.9 does not (it truncates float32 → bfloat16); compiled CUDA does.
    Checked once per device kind with :func:`._kernels.check_kernel` on x = 1.0 (exact answer
    0.5 + 0.75·2⁻⁸, correctly rounded 0.50390625).
    """
    kind = device.type
    if kind not in _BF16_OK:
        x = torch.ones(16, dtype=torch.bfloat16, device=device)
        y = torch.empty_like(x)
        kernels(device)["check"][(1,)](x, y, BLOCK=16)
        _BF16_OK[kind] = bool((y.float() == 0.50390625).all())
    return _BF16_OK[kind]


@dataclass
class _Group:
    dtypes: tuple[torch.dtype, torch.dtype, torch.dtype]
    tab: Tensor
    blk: Tensor
    sqn: Tensor
    nblocks: int


@dataclass
class Plan:
    """Everything one step launches with, for one list of tensors (see the module docstring)."""

    groups: list[_Group]
    work: Tensor  # float64: acc_size sums of squares, then the int32 flags (two per element)
    acc_size: int
    hp: Tensor
    hp_values: tuple[float, ...] | None = None

    @property
    def acc(self) -> Tensor:
        return self.work[: max(self.acc_size, 1)]

    @property
    def flags(self) -> Tensor:
        return self.work[max(self.acc_size, 1):].view(torch.int32)

    def set_hyper(self, values: Sequence[float]) -> None:
        """Write the hyperparameter vector to the device buffer if it changed."""
        vals = tuple(float(v) for v in values) + (0.0,) * (K.NHP - len(values))
        if vals != self.hp_values:
            self.hp.copy_(torch.tensor(vals, dtype=torch.float32), non_blocking=True)
            self.hp_values = vals


def _build(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
           rowlens: Sequence[int], roles: Sequence[int], global_flag: bool, block: int,
           device: torch.device) -> Plan:
    by_dtype: dict[tuple, list[int]] = {}
    for i, (p, g, m) in enumerate(zip(params, grads, exp_avgs, strict=True)):
        if p.numel():
            by_dtype.setdefault((p.dtype, g.dtype, m.dtype), []).append(i)
    acc_off = [0] * len(params)
    total = 0
    for i, p in enumerate(params):
        acc_off[i] = total
        total += p.numel() // rowlens[i] if p.numel() and roles[i] == K.ROLE_RMS else 0
    groups = []
    for dts, idx in by_dtype.items():
        rows, blk, sqn = [], [], []
        for j, i in enumerate(idx):
            p, g, m = params[i], grads[i], exp_avgs[i]
            n = p.numel()
            nb = -(-n // block)
            rows.append([p.data_ptr(), g.data_ptr(), m.data_ptr(), n, len(blk), rowlens[i],
                         acc_off[i], 0 if global_flag else i, roles[i]])
            blk.extend([j] * nb)
            sqn.append(math.sqrt(rowlens[i]))
        groups.append(_Group(
            dts, torch.tensor(rows, dtype=torch.int64).to(device),
            torch.tensor(blk, dtype=torch.int32).to(device),
            torch.tensor(sqn, dtype=torch.float64).to(device), len(blk)))
    n_flags = 1 if global_flag else max(len(params), 1)
    work = torch.zeros(max(total, 1) + (n_flags + 1) // 2, dtype=torch.float64, device=device)
    return Plan(groups, work, total, torch.zeros(K.NHP, dtype=torch.float32, device=device))


def get_plan(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor], *,
             rowlens: Sequence[int], roles: Sequence[int], global_flag: bool, block: int
             ) -> Plan:
    """The cached plan for these tensors (built on a miss; the least recently used is dropped)."""
    device = params[0].device
    key = (str(device), block, global_flag,
           tuple((p.data_ptr(), g.data_ptr(), m.data_ptr(), p.numel(), p.dtype, g.dtype,
                  m.dtype) for p, g, m in zip(params, grads, exp_avgs, strict=True)),
           tuple(rowlens), tuple(roles))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _build(params, grads, exp_avgs, rowlens, roles, global_flag, block, device)
        _PLANS[key] = plan
        while len(_PLANS) > PLAN_CACHE_SIZE:
            _PLANS.popitem(last=False)
    else:
        _PLANS.move_to_end(key)
    return plan


def launch(plan: Plan, device: torch.device, algo: int, *, maximize: bool, block: int,
           nonfinite: bool = False) -> int:
    """Run one step of ``plan``; returns the number of device launches it made."""
    ks = kernels(device)
    launches = 0
    if algo == K.ALGO_TIGER:
        plan.work.zero_()
        launches += 1
        for grp in plan.groups:
            pdt, gdt, _ = grp.dtypes
            ks["reduce"][(grp.nblocks,)](grp.tab, grp.blk, plan.hp, plan.acc, plan.flags,
                                        P_DT=DTYPES[pdt], G_DT=DTYPES[gdt], NONFINITE=nonfinite,
                                        BLOCK=block)
            launches += 1
    for grp in plan.groups:
        pdt, gdt, mdt = grp.dtypes
        ks["step"][(grp.nblocks,)](grp.tab, grp.blk, grp.sqn, plan.hp, plan.acc, plan.flags,
                                   ALGO=algo, P_DT=DTYPES[pdt], G_DT=DTYPES[gdt],
                                   M_DT=DTYPES[mdt], MAXIMIZE=maximize, BLOCK=block)
        launches += 1
    return launches


def launches_per_step(plan: Plan, algo: int) -> int:
    """Device launches of one step: one per dtype group; Tiger adds a zero fill and a reduction
    per group."""
    n = len(plan.groups)
    return 1 + 2 * n if algo == K.ALGO_TIGER else n
