"""The Triton kernels: one elementwise step kernel for Lion, SIGNUM and Tiger, and Tiger's
reduction pass (per-tensor / per-row sum of squares of θ and the NaN flag of g).

Both kernels are *multi-tensor*: program ``pid`` looks up its tensor ``i = blk[pid]`` in a block
map and that tensor's row of an int64 table ``tab[i] = (θ ptr, g ptr, m ptr, numel, first block,
row length, accumulator offset, flag index, role)``; the data pointers are cast from int64 with
``.to(tl.pointer_type(dtype))``. All tensors of one launch share (θ, g, m) dtypes, so a step is one
launch per dtype group (Tiger: plus one reduction launch and one zero fill).

Hyperparameters arrive in a float32 device tensor ``hp`` (so a new learning rate is a new value,
never a recompilation); zero tests of coefficients (``lr == 0`` and the like) are decided in
float64 by the host and passed in ``hp`` as 0.0 / 1.0 flags.

Arithmetic is float32 (θ, g, m are upcast exactly on load) and rounds once into each storage dtype
on store (round to nearest even). Division and square root are the correctly rounded
``tl.div_rn`` / ``tl.sqrt_rn``. The sign keeps NaN: ``sign_nan(c)`` is +1 / −1 / 0 / NaN for
c > 0 / c < 0 / c = ±0 / NaN, written as a select chain (``tl.maximum`` does not propagate NaN).

The raw functions are wrapped twice by :mod:`._launch`: as compiled ``triton.JITFunction`` (CUDA
tensors) and as the interpreter's ``InterpretedFunction`` (CPU tensors), independently of the
``TRITON_INTERPRET`` environment variable.
"""

from __future__ import annotations

import triton.language as tl

#: columns of the per-tensor int64 table
COL_THETA, COL_GRAD, COL_M, COL_NUMEL, COL_FIRST, COL_ROWLEN, COL_ACC, COL_FLAG, COL_ROLE = range(9)
NCOL = 9

#: role codes in the table (Tiger): RMS rule (weight, embedding), α/2 with centre 0, α/2 centre 1
ROLE_RMS, ROLE_BIAS, ROLE_SCALE = 0, 1, 2

#: slots of the hyperparameter tensor
#: Lion / SIGNUM (SIGNUM uses the beta1 slots for its β)
HP_LR, HP_B1, HP_W1, HP_B2, HP_W2, HP_KEEP = 0, 1, 2, 3, 4, 5
HP_LR_ZERO, HP_B1_ZERO, HP_B2_ZERO, HP_KEEP_ZERO, HP_KEEP_ONE = 6, 7, 8, 9, 10
#: Tiger
HP_ALPHA, HP_BETA, HP_W, HP_HALF, HP_LAM, HP_SHRINK = 0, 1, 2, 3, 4, 5
HP_ALPHA_ZERO, HP_BETA_ZERO, HP_FIRST, HP_LAST, HP_DECAY_ZERO, HP_HALF_ZERO = 6, 7, 8, 9, 10, 11
NHP = 12

ALGO_LION, ALGO_SIGNUM, ALGO_TIGER = 0, 1, 2


def step_kernel(tab, blk, sqn, hp, acc, flags,
                ALGO: tl.constexpr, P_DT: tl.constexpr, G_DT: tl.constexpr, M_DT: tl.constexpr,
                MAXIMIZE: tl.constexpr, BLOCK: tl.constexpr):
    """One optimizer step for block ``pid`` of tensor ``blk[pid]`` (see the module docstring).

    Lion:   c = fl(fl(β1·m) + fl(w1·g)); θ' = fl(fl(θ·keep) − η·sign(c));
            m' = fl(fl(β2·m) + fl(w2·g))
    SIGNUM: m' = fl(fl(β·m) + fl(w·g)); θ' = fl(fl(θ·keep) − η·sign(m'))
    Tiger:  NaN flag set → m kept, θ' = fl((θ − c)·s + c); else m' = fl(fl(b1·m) + fl(w·g)) and,
            on a window's last micro-step, θ' = fl(fl(θ·keep) − η·sign(m')) with the role's η.
    A coefficient flagged zero removes its term; η == 0 leaves θ unstored (bit-for-bit).
    """
    pid = tl.program_id(0)
    i = tl.load(blk + pid).to(tl.int64)
    row = tab + i * 9
    p_ptr = tl.load(row + 0).to(tl.pointer_type(P_DT))
    g_ptr = tl.load(row + 1).to(tl.pointer_type(G_DT))
    m_ptr = tl.load(row + 2).to(tl.pointer_type(M_DT))
    numel = tl.load(row + 3)
    first_block = tl.load(row + 4)
    offs = (pid - first_block) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel

    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if MAXIMIZE:
        g = -g
    m = tl.load(m_ptr + offs, mask=mask, other=0.0).to(tl.float32)

    if ALGO == 2:
        # ------------------------------------------------------------------ Tiger
        flag_idx = tl.load(row + 7)
        role = tl.load(row + 8)
        nan = tl.load(flags + flag_idx)
        if nan != 0:
            shrink = tl.load(hp + 5)
            x = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            if role == 2:  # noqa: SIM108 (kernel code: runtime branches, not ternaries)
                y = (x - 1.0) * shrink + 1.0
            else:
                y = x * shrink
            tl.store(p_ptr + offs, y.to(P_DT), mask=mask)
        else:
            w = tl.load(hp + 2)
            gw = w * g
            if tl.load(hp + 8) != 0:  # first micro-step of a window: decay the momentum
                if tl.load(hp + 7) != 0:  # noqa: SIM108
                    m_new = gw
                else:
                    m_new = tl.load(hp + 1) * m + gw
            else:
                m_new = m + gw
            tl.store(m_ptr + offs, m_new.to(M_DT), mask=mask)
            if (tl.load(hp + 9) != 0) & (tl.load(hp + 6) == 0):  # last micro-step, α != 0
                s = tl.where(m_new > 0, 1.0,
                             tl.where(m_new < 0, -1.0, tl.where(m_new == m_new, 0.0, m_new)))
                x = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                if role == 0:
                    rowlen = tl.load(row + 5)
                    acc_off = tl.load(row + 6)
                    ssq = tl.load(acc + acc_off + offs // rowlen, mask=mask, other=0.0)
                    # float64 sum of exact squares; √ and ÷ in float64 (IEEE, correctly
                    # rounded: sqrt.rn.f64, div.rn.f64), one rounding to float32 at the end
                    rms = (tl.sqrt(ssq) / tl.load(sqn + i)).to(tl.float32)
                    eta = rms * tl.load(hp + 0)
                    if tl.load(hp + 10) != 0:  # λ == 0: no decay term
                        y = x - eta * s
                    else:
                        keep = 1.0 - eta * tl.load(hp + 4)
                        y = x * keep - eta * s
                    tl.store(p_ptr + offs, y.to(P_DT), mask=mask & (eta != 0.0))
                else:
                    if tl.load(hp + 11) == 0:
                        y = x - tl.load(hp + 3) * s
                        tl.store(p_ptr + offs, y.to(P_DT), mask=mask)
    else:
        # ------------------------------------------------------------------ Lion / SIGNUM
        lr = tl.load(hp + 0)
        lr_zero = tl.load(hp + 6)
        if tl.load(hp + 7) != 0:
            c = tl.load(hp + 2) * g
        else:
            c = tl.load(hp + 1) * m + tl.load(hp + 2) * g
        if ALGO == 1:
            tl.store(m_ptr + offs, c.to(M_DT), mask=mask)
        if lr_zero == 0:
            s = tl.where(c > 0, 1.0, tl.where(c < 0, -1.0, tl.where(c == c, 0.0, c)))
            step = lr * s  # exact: s is ±1, 0 or NaN
            if tl.load(hp + 9) != 0:  # keep == 0: the θ term is absent
                y = -step
            else:
                x = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                if tl.load(hp + 10) != 0:  # noqa: SIM108 (keep == 1: no product)
                    y = x - step
                else:
                    y = x * tl.load(hp + 5) - step
            tl.store(p_ptr + offs, y.to(P_DT), mask=mask)
        if ALGO == 0:
            if tl.load(hp + 8) != 0:
                m_new = tl.load(hp + 4) * g
            else:
                m_new = tl.load(hp + 3) * m + tl.load(hp + 4) * g
            tl.store(m_ptr + offs, m_new.to(M_DT), mask=mask)


def reduce_kernel(tab, blk, hp, acc, flags, P_DT: tl.constexpr, G_DT: tl.constexpr,
                  NONFINITE: tl.constexpr, BLOCK: tl.constexpr):
    """Tiger's first pass: ``acc[acc_off + row] += Σ θ²`` over this block's part of each row
    (RMS roles, on a window's last micro-step only) and ``flags[flag_idx] = 1`` if this block's
    gradient holds a NaN (``NONFINITE``: or ±Inf). Float64 sums of the exact squares (no
    underflow for θ ~ 1e-30, no overflow for θ ~ 1e20), one atomic add per (block, row):
    the summation order across blocks is unspecified (the bound assumes any order)."""
    pid = tl.program_id(0)
    i = tl.load(blk + pid).to(tl.int64)
    row = tab + i * 9
    p_ptr = tl.load(row + 0).to(tl.pointer_type(P_DT))
    g_ptr = tl.load(row + 1).to(tl.pointer_type(G_DT))
    numel = tl.load(row + 3)
    first_block = tl.load(row + 4)
    start = (pid - first_block) * BLOCK
    offs = start + tl.arange(0, BLOCK)
    mask = offs < numel

    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if NONFINITE:  # noqa: SIM108
        bad = mask & ~(tl.abs(g) < float("inf"))
    else:
        bad = mask & (g != g)
    # per-element atomics only where the gradient is bad (rare): no reduction needed
    flag_at = flags + tl.load(row + 7) + tl.full([BLOCK], 0, tl.int64)
    tl.atomic_max(flag_at, tl.full([BLOCK], 1, tl.int32), mask=bad)

    if (tl.load(row + 8) == 0) & (tl.load(hp + 9) != 0):
        # squares of float32 (and narrower) values are exact in float64 and can neither
        # underflow nor overflow there: no scaling pass is needed for tiny or huge θ
        x = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float64)
        sq = x * x
        rowlen = tl.load(row + 5)
        acc_off = tl.load(row + 6)
        r_first = start // rowlen
        r_last = (tl.minimum(start + BLOCK, numel) - 1) // rowlen
        rows = offs // rowlen
        for r in range(r_first, r_last + 1):
            part = tl.reduce(tl.where(mask & (rows == r), sq, 0.0), 0, tl.standard._sum_combine)
            tl.atomic_add(acc + acc_off + r, part)


def check_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr):
    """Self-check of a storage dtype: ``y = RN(x·0.5 + x·3·2^-10)`` computed in float32 from a
    load of ``x``, stored into ``y``'s dtype. For x = 1 in bfloat16 the exact result
    0.5 + 0.75·2^-8 must round to nearest, 0.50390625 (truncation gives 0.5)."""
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs).to(tl.float32)
    y = x * 0.5 + x * 0.0029296875
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty))
