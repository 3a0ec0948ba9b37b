/* lionspec native CPU kernel: one step of Lion, SIGNUM or Tiger over many tensors in one call.
 *
 * Built by lionspec/impls/torch/_native.py, once per configuration (the macros below) with
 * -O3 -march=native -ffp-contract=off -fopenmp, and cached on disk. The arithmetic is that of
 * _math.py, operation for operation, in the compute type CT (float, or double when the parameter
 * or its momentum is float64): every product and sum rounds once in CT (no FMA contraction),
 * each load converts exactly, each store rounds once into the tensor's dtype.
 *
 * Configuration (all integers, set with -D):
 *   ALGO          0 Lion, 1 SIGNUM, 2 Tiger
 *   CT_DOUBLE     compute in double (else float)
 *   TT, GT, MT    dtype of θ (and of the compensation), of g, of m: f32 f64 bf16 f16
 *   COMP          a compensation buffer: the tracked value is θ + comp (Kahan-style split)
 *   MAXIMIZE      negate g
 *   LR_ZERO       η == 0 (Lion/SIGNUM; Tiger bias/scale): θ untouched
 *   B1_ZERO B2_ZERO   Lion: β1 == 0 / β2 == 0 (the β·m term is absent)
 *   B_ZERO        SIGNUM, Tiger: β == 0
 *   KEEP_ZERO KEEP_ONE   keep = 1 − ηλ is exactly 0 / 1 (Lion, SIGNUM; Tiger: KEEP_ONE only)
 *   Tiger only:
 *   RMS           η = fl(RMS(x)·α) (weight and embedding roles), else η = α (given)
 *   ROWS          the RMS (and η) is per row of ROWLEN elements (embedding role)
 *   FIRST LAST    the micro-step opens / closes an accumulation window
 *   NAN_MODE      0 the NaN rule is off this step (a given false flag), 1 on for every tensor
 *                 (a given true flag: global scope), 2 a tensor's flag is "g holds a NaN",
 *                 3 "g holds a non-finite value"
 *   CENTRE        the NaN rule's centre (0, or 1 for the scale role)
 *
 * Entry point: lionspec_step(count, ptrs, numels, rowlens, hp, nthreads, flags_out)
 *   ptrs[4*t + 0..3]  θ, g, m, comp of tensor t (comp 0 when COMP is 0)
 *   numels[t]         elements of tensor t; rowlens[t] the row length (ROWS), else ignored
 *   hp                Lion: lr, β1, w1, β2, w2, keep; SIGNUM: lr, β, w, keep;
 *                     Tiger: lr, β, w, λ, shrink ratio (each converted to CT once)
 *   flags_out[t]      Tiger: set to the tensor's NaN-rule flag (may be NULL)
 * Work is split in items of whole rows / CHUNK elements, the same items whatever the thread
 * count, and the RMS partial sums are added in item order: results never depend on threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if CT_DOUBLE
typedef double CT;
#else
typedef float CT;
#endif

/* ------------------------------------------------------------------ dtype conversions */

static inline float bf16_up(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* round to nearest even; NaN -> the canonical quiet NaN (as c10::BFloat16) */
static inline uint16_t bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return f != f ? (uint16_t)0x7fc0u : (uint16_t)r;
}

/* double -> bf16 with ONE rounding: round to odd into float (24 >= 8 + 2 bits), then to
 * nearest even: the classic double-rounding-free route. */
static inline uint16_t bf16_from_double(double d) {
    float f = (float)d;
    if ((double)f != d && d == d) {
        uint32_t u;
        memcpy(&u, &f, 4);
        if (fabs((double)f) > fabs(d)) u -= 1u; /* rounded away from zero: truncate instead */
        u |= 1u;                                 /* inexact: make it odd */
        memcpy(&f, &u, 4);
    }
    return bf16_from_float(f);
}

/* float16 as bit operations (vectorisable; GCC 12 vectorises _Float16 conversions only with
 * AVX512-FP16). Widening is exact: the 15 low bits shifted into place and scaled by 2^112
 * (exact for subnormals too), exponent forced to all ones for Inf/NaN. */
static inline float f16_up(uint16_t h) {
    uint32_t u = (uint32_t)(h & 0x7fffu) << 13;
    float f;
    memcpy(&f, &u, 4);
    f *= 0x1p112f;
    memcpy(&u, &f, 4);
    u |= (h & 0x7fffu) >= 0x7c00u ? 0x7f800000u : 0u;
    u |= (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &u, 4);
    return f;
}

/* float -> float16, round to nearest even (F. Giesen's float_to_half_fast3_rtne): subnormal
 * results by one hardware addition of a magic constant (rounds to nearest even), normal ones by
 * integer rounding; overflow -> Inf; NaN stays NaN with its payload's top bits (as vcvtps2ph). */
static inline uint16_t f16_from_float(float v) {
    uint32_t f;
    memcpy(&f, &v, 4);
    const uint32_t sign = f & 0x80000000u;
    f ^= sign;
    const uint32_t magic_bits = (uint32_t)((127 - 15) + (23 - 10) + 1) << 23;
    float magic, t;
    memcpy(&magic, &magic_bits, 4);
    memcpy(&t, &f, 4);
    t += magic;
    uint32_t sub;
    memcpy(&sub, &t, 4);
    sub -= magic_bits;
    const uint32_t odd = (f >> 13) & 1u;
    const uint32_t normal = (f + ((uint32_t)(15 - 127) << 23) + 0xfffu + odd) >> 13;
    uint32_t o = f < (113u << 23) ? sub : normal;
    o = f >= (143u << 23) ? (f > 0x7f800000u ? (0x7e00u | ((f >> 13) & 0x3ffu)) : 0x7c00u) : o;
    return (uint16_t)(o | (sign >> 16));
}

static inline uint16_t f16_from_double(double d) { /* one rounding (GCC, clang) */
    _Float16 h = (_Float16)d;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

typedef float ty_f32;
typedef double ty_f64;
typedef uint16_t ty_bf16;
typedef uint16_t ty_f16;

static inline CT up_f32(float v) { return (CT)v; }
static inline CT up_f64(double v) { return (CT)v; }
static inline CT up_bf16(uint16_t v) { return (CT)bf16_up(v); }
static inline CT up_f16(uint16_t v) { return (CT)f16_up(v); }
static inline float down_f32(CT v) { return (float)v; }
static inline double down_f64(CT v) { return (double)v; }
#if CT_DOUBLE
static inline uint16_t down_bf16(CT v) { return bf16_from_double(v); }
static inline uint16_t down_f16(CT v) { return f16_from_double(v); }
#else
static inline uint16_t down_bf16(CT v) { return bf16_from_float(v); }
static inline uint16_t down_f16(CT v) { return f16_from_float(v); }
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define TT_T CAT(ty_, TT)
#define GT_T CAT(ty_, GT)
#define MT_T CAT(ty_, MT)
#define UP_T CAT(up_, TT)
#define UP_G CAT(up_, GT)
#define UP_M CAT(up_, MT)
#define DOWN_T CAT(down_, TT)
#define DOWN_M CAT(down_, MT)

#ifndef CHUNK
#define CHUNK 16384
#endif

/* ------------------------------------------------------------------ AVX2 fast path
 *
 * GCC vectorises the scalar loops below well for float and double, but not the 16-bit
 * conversions: it widens bf16 in 5 instructions per 16 elements where 3 do, and narrows with
 * 16-bit masks, selects and lane fixes (about 11 instructions per 8 elements, where 7 do), and
 * it leaves float16 unvectorised without AVX512-FP16. With a 16-bit dtype the step is then
 * bound by instructions, not memory. So where AVX2 is available (and F16C for float16), the
 * loops of Lion, SIGNUM and Tiger's momentum/move step run 16 elements at a time on 8-lane
 * vectors (GCC/clang vector extensions, plus five AVX2/F16C builtins both compilers name alike;
 * not <immintrin.h>, which alone would triple the build time): the same operations in the same
 * order as the scalar code (every product and sum rounded once, no FMA under
 * -ffp-contract=off), and the same conversions:
 *   bf16 -> float   the bits moved into the high half (exact)
 *   float -> bf16   round to nearest even by integer addition, NaN -> 0x7fc0
 *   f16 <-> float   vcvtph2ps / vcvtps2ph with round to nearest even (F16C), which the
 *                   scalar f16_up / f16_from_float reproduce bit for bit (NaN payloads aside:
 *                   vcvtph2ps quiets a signalling NaN)
 * The scalar loop finishes each segment's last (b − a) mod 16 elements. Compensation buffers,
 * double compute and all-float configurations (memory-bound already) keep the scalar code. */
#define KIND_f32 1
#define KIND_f64 2
#define KIND_bf16 3
#define KIND_f16 4
#define KIND(t) CAT(KIND_, t)
#define HAS_KIND(k) (KIND(TT) == (k) || KIND(GT) == (k) || KIND(MT) == (k))
#if defined(__has_builtin) && defined(__AVX2__)
#if __has_builtin(__builtin_convertvector) && __has_builtin(__builtin_ia32_packusdw256) && \
    __has_builtin(__builtin_ia32_permdi256) && __has_builtin(__builtin_ia32_pblendvb256)
#define HAVE_AVX2_BUILTINS 1
#endif
#if defined(__F16C__) && __has_builtin(__builtin_ia32_vcvtph2ps256) && \
    __has_builtin(__builtin_ia32_vcvtps2ph256)
#define HAVE_F16C_BUILTINS 1
#endif
#endif
#ifndef HAVE_AVX2_BUILTINS
#define HAVE_AVX2_BUILTINS 0
#endif
#ifndef HAVE_F16C_BUILTINS
#define HAVE_F16C_BUILTINS 0
#endif
#if HAVE_AVX2_BUILTINS && !CT_DOUBLE && !COMP && (HAS_KIND(3) || HAS_KIND(4)) && \
    (HAVE_F16C_BUILTINS || !HAS_KIND(4))
#define VEC 1
#else
#define VEC 0
#endif

/* whether this build runs the vector loops (read by _native.vectorised) */
const int lionspec_vectorised = VEC;

#if VEC
typedef float V __attribute__((vector_size(32)));
typedef uint32_t VU __attribute__((vector_size(32)));
typedef int32_t VI __attribute__((vector_size(32)));
typedef long long VQ __attribute__((vector_size(32)));
typedef char VB __attribute__((vector_size(32)));
typedef short VS __attribute__((vector_size(32)));
typedef short VS8 __attribute__((vector_size(16)));
typedef uint16_t VH8 __attribute__((vector_size(16)));

/* vload_X(p, h): lanes h·8 .. h·8 + 7 of the 16 elements at p, as floats; vstore_X(p, a, b):
 * the 16 elements at p from the halves a (h = 0) and b (h = 1). The halves of a group hold its
 * elements in natural order, except when θ, g and m are all bf16 (ALL_BF16): then half 0 holds
 * elements 0-3 and 8-11 and half 1 elements 4-7 and 12-15, the order in which one 256-bit load
 * unpacks into 32-bit lanes and one pack puts them back (elementwise math does not care). */
#define ALL_BF16 (KIND(TT) == 3 && KIND(GT) == 3 && KIND(MT) == 3 && \
                  __has_builtin(__builtin_shufflevector))
static inline V vload_f32(const float *p, int h) {
    V v;
    memcpy(&v, p + 8 * h, sizeof v);
    return v;
}
static inline void vstore_f32(float *p, V a, V b) {
    memcpy(p, &a, sizeof a);
    memcpy(p + 8, &b, sizeof b);
}
static inline V vload_bf16(const uint16_t *p, int h) {
#if ALL_BF16 /* bf16 bits into the high half of each lane: one unpack (vpunpck[lh]wd) with 0 */
    VS x, z = {0};
    memcpy(&x, p, sizeof x);
    return (V)(h ? __builtin_shufflevector(z, x, 4, 20, 5, 21, 6, 22, 7, 23, 12, 28, 13, 29, 14,
                                           30, 15, 31)
                 : __builtin_shufflevector(z, x, 0, 16, 1, 17, 2, 18, 3, 19, 8, 24, 9, 25, 10,
                                           26, 11, 27));
#else
    VH8 x;
    memcpy(&x, p + 8 * h, sizeof x);
    return (V)(__builtin_convertvector(x, VU) << 16);
#endif
}
/* float -> bf16 bits in the low half of each 32-bit lane: (u + 0x7fff + lsb) >> 16, NaN 0x7fc0 */
static inline VI bf16_bits(V f) {
    const VU u = (VU)f;
    const VU r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const VI nan = f != f;
    const VI canonical = {0x7fc0, 0x7fc0, 0x7fc0, 0x7fc0, 0x7fc0, 0x7fc0, 0x7fc0, 0x7fc0};
    return (VI)__builtin_ia32_pblendvb256((VB)r, (VB)canonical, (VB)nan);
}
static inline void vstore_bf16(uint16_t *p, V a, V b) {
    /* vpackusdw interleaves the 128-bit lanes of a and b, the inverse of the ALL_BF16
     * unpacks; in natural order a lane permute puts a before b */
    VQ packed = (VQ)__builtin_ia32_packusdw256(bf16_bits(a), bf16_bits(b));
#if !ALL_BF16
    packed = __builtin_ia32_permdi256(packed, 0xd8);
#endif
    memcpy(p, &packed, sizeof packed);
}
#if HAVE_F16C_BUILTINS
static inline V vload_f16(const uint16_t *p, int h) {
    VS8 x;
    memcpy(&x, p + 8 * h, sizeof x);
    return __builtin_ia32_vcvtph2ps256(x);
}
static inline void vstore_f16(uint16_t *p, V a, V b) {
    const VS8 lo = __builtin_ia32_vcvtps2ph256(a, 0), hi = __builtin_ia32_vcvtps2ph256(b, 0);
    memcpy(p, &lo, sizeof lo); /* imm 0: round to nearest even */
    memcpy(p + 8, &hi, sizeof hi);
}
#endif
#define VLOAD_T CAT(vload_, TT)
#define VLOAD_G CAT(vload_, GT)
#define VLOAD_M CAT(vload_, MT)
#define VSTORE_T CAT(vstore_, TT)
#define VSTORE_M CAT(vstore_, MT)

static inline V vset(CT x) { return (V){x, x, x, x, x, x, x, x}; }
static inline V vneg(V x) { return (V)((VU)x ^ 0x80000000u); }
#define VMUL(a, b) ((a) * (b))
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))

static inline V vgrad(const GT_T *restrict g, int64_t i, int h) {
    V v = VLOAD_G(g + i, h);
#if MAXIMIZE
    v = vneg(v);
#endif
    return v;
}

/* sign_nan, lane by lane: copysign(1, c) where c != 0, OR-ed with all ones where c is NaN */
static inline V vsign_nan(V c) {
    const VU one = ((VU)c & 0x80000000u) | 0x3f800000u;
    return (V)((one & (VU)(c != 0)) | (VU)(c != c));
}

static inline V vdecoupled(V x, V s, V eta, V keep, int keep_one, int keep_zero) {
    const V step = VMUL(s, eta);
    if (keep_zero) return vneg(step);
    if (keep_one) return VSUB(x, step);
    return VSUB(VMUL(x, keep), step);
}
#endif /* VEC */

/* ------------------------------------------------------------------ the per-element math */

/* sign with NaN propagated: ±0 -> +0, ±Inf -> ±1, NaN -> NaN (the all-ones NaN, as the
 * vectorised torch.maximum of the eager paths produces). Bit operations, branch-free:
 * copysign(1, c) kept where c != 0, then OR-ed with the all-ones mask where c is NaN. */
#if CT_DOUBLE
typedef uint64_t UT;
#define ONE_BITS 0x3ff0000000000000ull
#else
typedef uint32_t UT;
#define ONE_BITS 0x3f800000u
#endif
static inline CT sign_nan(CT c) {
    UT u;
    memcpy(&u, &c, sizeof u);
    const UT sign = (UT)1 << (8 * sizeof(UT) - 1);
    const UT one = ONE_BITS | (u & sign);
    const UT r = (one & -(UT)(c != 0)) | -(UT)(c != c);
    CT out;
    memcpy(&out, &r, sizeof out);
    return out;
}

static inline CT grad_at(const GT_T *restrict g, int64_t i) {
    CT v = UP_G(g[i]);
#if MAXIMIZE
    v = -v;
#endif
    return v;
}

static inline CT master_at(const TT_T *restrict th, const TT_T *restrict cp, int64_t i) {
    CT x = UP_T(th[i]);
#if COMP
    x = x + UP_T(cp[i]);
#else
    (void)cp;
#endif
    return x;
}

/* store the new tracked value: one rounding; with compensation hi = RN(v), lo = RN(v − hi)
 * (v − hi exact in CT), lo = 0 where hi is not finite */
static inline void store_theta(TT_T *restrict th, TT_T *restrict cp, int64_t i, CT v) {
    TT_T hi = DOWN_T(v);
    th[i] = hi;
#if COMP
    CT h = UP_T(hi);
    CT lo = v - h;
    lo = (fabs((double)h) < INFINITY) ? lo : (CT)0;
    cp[i] = DOWN_T(lo);
#else
    (void)cp;
#endif
}

/* fl(fl(x·keep) − η·s); fl(x − η·s) when keep == 1; −η·s when keep == 0 */
static inline CT decoupled(CT x, CT s, CT eta, CT keep, int keep_one, int keep_zero) {
    CT step = s * eta;
    if (keep_zero) return -step;
    if (keep_one) return x - step;
    return x * keep - step;
}

#if ALGO == 0 /* Lion */
#define NHP 6
static void segment(TT_T *restrict th, const GT_T *restrict g, MT_T *restrict m,
                    TT_T *restrict cp, int64_t a, int64_t b, const CT *hp) {
    const CT lr = hp[0], beta1 = hp[1], w1 = hp[2], beta2 = hp[3], w2 = hp[4], keep = hp[5];
    (void)lr; (void)beta1; (void)beta2; (void)keep; (void)th; (void)cp;
    int64_t i = a;
#if VEC
    const V vlr = vset(lr), vb1 = vset(beta1), vw1 = vset(w1), vb2 = vset(beta2),
            vw2 = vset(w2), vkeep = vset(keep);
    (void)vlr; (void)vb1; (void)vw1; (void)vb2; (void)vkeep;
    for (; i + 16 <= b; i += 16) {
        V tn[2], mn[2];
        for (int h = 0; h < 2; ++h) {
            const V gi = vgrad(g, i, h);
            const V mi = VLOAD_M(m + i, h);
            (void)mi;
#if !LR_ZERO
            const V gw1 = VMUL(gi, vw1);
#if B1_ZERO
            const V c = gw1;
#else
            const V c = VADD(VMUL(mi, vb1), gw1);
#endif
            tn[h] = vdecoupled(VLOAD_T(th + i, h), vsign_nan(c), vlr, vkeep, KEEP_ONE, KEEP_ZERO);
#endif
            const V gw2 = VMUL(gi, vw2);
#if B2_ZERO
            mn[h] = gw2;
#else
            mn[h] = VADD(VMUL(mi, vb2), gw2);
#endif
        }
#if !LR_ZERO
        VSTORE_T(th + i, tn[0], tn[1]);
#endif
        VSTORE_M(m + i, mn[0], mn[1]);
    }
#endif
    for (; i < b; ++i) {
        const CT gi = grad_at(g, i);
        const CT mi = UP_M(m[i]);
#if !LR_ZERO
        const CT gw1 = gi * w1;
#if B1_ZERO
        const CT c = gw1;
#else
        const CT c = mi * beta1 + gw1;
#endif
        store_theta(th, cp, i,
                    decoupled(master_at(th, cp, i), sign_nan(c), lr, keep, KEEP_ONE, KEEP_ZERO));
#endif
        const CT gw2 = gi * w2;
#if B2_ZERO
        m[i] = DOWN_M(gw2);
#else
        m[i] = DOWN_M(mi * beta2 + gw2);
#endif
    }
}

#elif ALGO == 1 /* SIGNUM */
#define NHP 4
static void segment(TT_T *restrict th, const GT_T *restrict g, MT_T *restrict m,
                    TT_T *restrict cp, int64_t a, int64_t b, const CT *hp) {
    const CT lr = hp[0], beta = hp[1], w = hp[2], keep = hp[3];
    (void)lr; (void)beta; (void)keep; (void)th; (void)cp;
    int64_t i = a;
#if VEC
    const V vlr = vset(lr), vb = vset(beta), vw = vset(w), vkeep = vset(keep);
    (void)vlr; (void)vb; (void)vkeep;
    for (; i + 16 <= b; i += 16) {
        V tn[2], mn[2];
        for (int h = 0; h < 2; ++h) {
            const V gw = VMUL(vgrad(g, i, h), vw);
#if B_ZERO
            mn[h] = gw;
#else
            mn[h] = VADD(VMUL(VLOAD_M(m + i, h), vb), gw);
#endif
#if !LR_ZERO
            tn[h] = vdecoupled(VLOAD_T(th + i, h), vsign_nan(mn[h]), vlr, vkeep, KEEP_ONE,
                               KEEP_ZERO);
#endif
        }
#if !LR_ZERO
        VSTORE_T(th + i, tn[0], tn[1]);
#endif
        VSTORE_M(m + i, mn[0], mn[1]);
    }
#endif
    for (; i < b; ++i) {
        const CT gw = grad_at(g, i) * w;
#if B_ZERO
        const CT mn = gw;
#else
        const CT mn = UP_M(m[i]) * beta + gw;
#endif
#if !LR_ZERO
        store_theta(th, cp, i,
                    decoupled(master_at(th, cp, i), sign_nan(mn), lr, keep, KEEP_ONE, KEEP_ZERO));
#endif
        m[i] = DOWN_M(mn);
    }
}

#elif ALGO == 2 /* Tiger */
#define NHP 5
/* the NaN rule: (x − centre)·s + centre; m untouched */
static void shrink(TT_T *restrict th, TT_T *restrict cp, int64_t a, int64_t b, CT ratio) {
    for (int64_t i = a; i < b; ++i) {
        const CT x = master_at(th, cp, i);
#if CENTRE == 0
        store_theta(th, cp, i, x * ratio);
#else
        store_theta(th, cp, i, (x - (CT)1) * ratio + (CT)1);
#endif
    }
}

/* m' = fl(fl(β·m) + fl(w·g)) on a window's first micro-step, fl(fl(w·g) + m) otherwise;
 * move: θ' = decoupled(x, sign(m'), η, keep) (the window's last micro-step, η != 0) */
static void segment(TT_T *restrict th, const GT_T *restrict g, MT_T *restrict m,
                    TT_T *restrict cp, int64_t a, int64_t b, const CT *hp, int move, CT eta,
                    CT keep) {
    const CT beta = hp[1], w = hp[2];
    (void)beta;
    int64_t i = a;
#if VEC
    const V vb = vset(beta), vw = vset(w), veta = vset(eta), vkeep = vset(keep);
    (void)vb; (void)veta; (void)vkeep;
    for (; i + 16 <= b; i += 16) {
        V tn[2], mn[2];
        for (int h = 0; h < 2; ++h) {
            const V gw = VMUL(vgrad(g, i, h), vw);
#if FIRST && B_ZERO
            mn[h] = gw;
#elif FIRST
            mn[h] = VADD(VMUL(VLOAD_M(m + i, h), vb), gw);
#else
            mn[h] = VADD(gw, VLOAD_M(m + i, h));
#endif
            if (move)
                tn[h] = vdecoupled(VLOAD_T(th + i, h), vsign_nan(mn[h]), veta, vkeep, KEEP_ONE, 0);
        }
        if (move) VSTORE_T(th + i, tn[0], tn[1]);
        VSTORE_M(m + i, mn[0], mn[1]);
    }
#endif
    if (move) {
        for (; i < b; ++i) {
            const CT gw = grad_at(g, i) * w;
#if FIRST && B_ZERO
            const CT mn = gw;
#elif FIRST
            const CT mn = UP_M(m[i]) * beta + gw;
#else
            const CT mn = gw + UP_M(m[i]);
#endif
            store_theta(th, cp, i,
                        decoupled(master_at(th, cp, i), sign_nan(mn), eta, keep, KEEP_ONE, 0));
            m[i] = DOWN_M(mn);
        }
    } else {
        for (; i < b; ++i) {
            const CT gw = grad_at(g, i) * w;
#if FIRST && B_ZERO
            m[i] = DOWN_M(gw);
#elif FIRST
            m[i] = DOWN_M(UP_M(m[i]) * beta + gw);
#else
            m[i] = DOWN_M(gw + UP_M(m[i]));
#endif
        }
    }
}

/* Σ x² over [a, b) in double: a SIMD reduction (one partial sum per vector lane, added in a
 * fixed order: deterministic for a given build; the bound covers any summation order) */
static double sum_squares(const TT_T *restrict th, const TT_T *restrict cp, int64_t a,
                          int64_t b) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = a; i < b; ++i) {
        const double x = (double)master_at(th, cp, i);
        s += x * x;
    }
    return s;
}

static double max_abs(const TT_T *restrict th, const TT_T *restrict cp, int64_t a, int64_t b) {
    double mx = 0;
    for (int64_t i = a; i < b; ++i) {
        const double x = fabs((double)master_at(th, cp, i));
        mx = (x > mx || x != x) ? x : mx;
    }
    return mx;
}

/* Σ (x·2^k)² over [a, b): the rescaled sum of norm_of's rare path. ldexp scales exactly
 * without forming 2^k, which overflows for k > 1023 (θ subnormal: k up to 1074). */
static double sum_squares_shifted(const TT_T *restrict th, const TT_T *restrict cp, int64_t a,
                                  int64_t b, int k) {
    double s = 0;
    for (int64_t i = a; i < b; ++i) {
        const double x = ldexp((double)master_at(th, cp, i), k);
        s += x * x;
    }
    return s;
}

/* ‖x‖₂ of [a, b) from its plain sum of squares s: exact squares for a float compute type;
 * for double, squares that underflow (s < n·DBL_MIN) or overflow (s = inf) are redone with
 * a power-of-two scaling (as TensorOps.norm does) */
static CT norm_of(const TT_T *restrict th, const TT_T *restrict cp, int64_t a, int64_t b,
                  double s) {
#if CT_DOUBLE
    if (!(s >= (double)(b - a) * 2.2250738585072014e-308) || s == INFINITY) {
        const double mx = max_abs(th, cp, a, b);
        if (mx > 0 && mx < INFINITY) {
            int e;
            frexp(mx, &e);
            return ldexp(sqrt(sum_squares_shifted(th, cp, a, b, -e)), e);
        }
    }
#else
    (void)th; (void)cp; (void)a; (void)b;
#endif
    return (CT)sqrt(s);
}

/* does one gradient element trip the NaN rule: NaN (NAN_MODE 2), or any non-finite value */
static inline int trips(CT v) {
#if NAN_MODE == 2
    return v != v;
#else
    return !(fabs((double)v) < INFINITY);
#endif
}

/* one read of θ and g together: Σ x² (as sum_squares) and whether g trips the NaN rule */
static double squares_and_nan(const TT_T *restrict th, const TT_T *restrict cp,
                              const GT_T *restrict g, int64_t a, int64_t b, uint8_t *hit_out) {
    double s = 0;
    int hit = 0;
#pragma omp simd reduction(+ : s) reduction(| : hit)
    for (int64_t i = a; i < b; ++i) {
        const double x = (double)master_at(th, cp, i);
        s += x * x;
        hit |= trips(UP_G(g[i]));
    }
    *hit_out = (uint8_t)hit;
    return s;
}

/* does g[a, b) trip the NaN rule */
static int nan_in(const GT_T *restrict g, int64_t a, int64_t b) {
    int hit = 0;
#pragma omp simd reduction(| : hit)
    for (int64_t i = a; i < b; ++i) {
        hit |= trips(UP_G(g[i]));
    }
    return hit;
}
#endif /* ALGO */

/* ------------------------------------------------------------------ the multi-tensor driver */

typedef struct {
    int64_t tensor, a, b; /* elements [a, b) of tensor; whole rows when ROWS */
} item_t;

void lionspec_step(int64_t count, const int64_t *ptrs, const int64_t *numels,
                   const int64_t *rowlens, const double *hp64, int64_t nthreads,
                   uint8_t *flags_out) {
    CT hp[NHP];
    for (int k = 0; k < NHP; ++k) hp[k] = (CT)hp64[k];
    (void)rowlens; (void)flags_out;

    /* work items: whole rows (ROWS) or CHUNK elements, in tensor order */
    int64_t nitems = 0;
    for (int64_t t = 0; t < count; ++t) {
        int64_t unit = 1;
#if ALGO == 2 && ROWS
        unit = rowlens[t];
#endif
        const int64_t per = CHUNK > unit ? CHUNK / unit * unit : unit;
        nitems += (numels[t] + per - 1) / per;
    }
    item_t *items = malloc((size_t)(nitems > 0 ? nitems : 1) * sizeof *items);
    if (!items) return; /* the caller checks flags_out[count] (set below) */
    int64_t *first_item = malloc((size_t)(count + 1) * sizeof *first_item);
    if (!first_item) { free(items); return; }
    int64_t k = 0;
    for (int64_t t = 0; t < count; ++t) {
        int64_t unit = 1;
#if ALGO == 2 && ROWS
        unit = rowlens[t];
#endif
        const int64_t per = CHUNK > unit ? CHUNK / unit * unit : unit;
        first_item[t] = k;
        for (int64_t a = 0; a < numels[t]; a += per, ++k) {
            items[k].tensor = t;
            items[k].a = a;
            items[k].b = a + per < numels[t] ? a + per : numels[t];
        }
    }
    first_item[count] = k;

#if ALGO != 2
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t it = 0; it < nitems; ++it) {
        const int64_t *p = ptrs + 4 * items[it].tensor;
        segment((TT_T *)p[0], (const GT_T *)p[1], (MT_T *)p[2], (TT_T *)p[3], items[it].a,
                items[it].b, hp);
    }
#else
    /* Tiger, tensor by tensor: pass 1 over the tensor's items (the NaN flag of g; for a
     * per-tensor RMS also the partial sums of squares of x), a barrier, then every thread
     * forms the tensor's flag and η from the same partials in the same order, and pass 2
     * steps the items with the same static split as pass 1, so each thread finds in its own
     * cache what it has just read (whole for tensors up to about the L2 size). A per-row RMS
     * (embedding) is computed just before its row is stepped, while the row is in L1: pass 1
     * then reads only g. */
    double *partial = calloc((size_t)(nitems > 0 ? nitems : 1), sizeof *partial);
    uint8_t *hit = calloc((size_t)(nitems > 0 ? nitems : 1), 1);
    if (!partial || !hit) {
        free(partial); free(hit); free(items); free(first_item);
        return;
    }
#pragma omp parallel num_threads(nthreads)
    for (int64_t t = 0; t < count; ++t) {
        const int64_t *p = ptrs + 4 * t;
        TT_T *th = (TT_T *)p[0], *cp = (TT_T *)p[3];
        const GT_T *g = (const GT_T *)p[1];
        MT_T *m = (MT_T *)p[2];
        const int64_t i0 = first_item[t], i1 = first_item[t + 1];
        (void)th; (void)cp; (void)g; (void)m;
#if NAN_MODE >= 2 || (RMS && LAST && !ROWS)
#pragma omp for schedule(static)
        for (int64_t it = i0; it < i1; ++it) {
            const int64_t a = items[it].a, b = items[it].b;
#if NAN_MODE >= 2 && RMS && LAST && !ROWS
            partial[it] = squares_and_nan(th, cp, g, a, b, hit + it);
#elif RMS && LAST && !ROWS
            partial[it] = sum_squares(th, cp, a, b);
#else
            hit[it] = (uint8_t)nan_in(g, a, b);
#endif
        } /* implicit barrier: every partial of tensor t is in */
#endif
        int nanf = NAN_MODE == 1;
#if NAN_MODE >= 2
        for (int64_t it = i0; it < i1; ++it) nanf |= hit[it];
#endif
        CT eta = hp[0];
#if RMS && LAST && !ROWS
        double sq = 0;
        for (int64_t it = i0; it < i1; ++it) sq += partial[it];
        eta = norm_of(th, cp, 0, numels[t], sq) / (CT)sqrt((double)numels[t]) * hp[0];
#endif
        const CT keep = KEEP_ONE ? (CT)1 : (CT)1 - eta * hp[3];
        (void)keep;
#pragma omp for schedule(static) nowait
        for (int64_t it = i0; it < i1; ++it) {
            const int64_t a = items[it].a, b = items[it].b;
            if (nanf) {
                shrink(th, cp, a, b, hp[4]);
                continue;
            }
#if !LAST || LR_ZERO
            segment(th, g, m, cp, a, b, hp, 0, 0, 1);
#elif RMS && ROWS
            const int64_t len = rowlens[t];
            const CT div = (CT)sqrt((double)len);
            for (int64_t r = a / len; r < b / len; ++r) {
                const int64_t ra = r * len, rb = ra + len;
                const CT e = norm_of(th, cp, ra, rb, sum_squares(th, cp, ra, rb)) / div *
                             hp[0];
                const CT k = KEEP_ONE ? (CT)1 : (CT)1 - e * hp[3];
                segment(th, g, m, cp, ra, rb, hp, e != 0, e, k);
            }
#else
            segment(th, g, m, cp, a, b, hp, eta != 0, eta, keep);
#endif
        }
    }
    if (flags_out)
        for (int64_t t = 0; t < count; ++t) {
            uint8_t f = NAN_MODE == 1;
#if NAN_MODE >= 2
            for (int64_t it = first_item[t]; it < first_item[t + 1]; ++it) f |= hit[it];
#endif
            flags_out[t] = f;
        }
    free(partial);
    free(hit);
#endif
    free(items);
    free(first_item);
    if (flags_out) flags_out[count] = 1; /* completed */
}
