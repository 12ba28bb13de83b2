/* ek_kernels.c - int8 kernels of edgekit's native backend, bit-exact with TensorFlow Lite Micro.
 *
 * The integer arithmetic follows TFLite Micro's reference kernels: a 32-bit accumulator per output, then the
 * fixed-point requantization (a saturating, rounding doubling high multiply followed by a rounding right
 * shift), the output zero point and the activation clamp. Softmax, logistic and tanh use the same gemmlowp
 * fixed-point exp/reciprocal approximations as TFLite. No libm, no allocation, no global state.
 */
#include "ek_kernels.h"

#include <string.h>

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && defined(__GNUC__)
#include <arm_mve.h> /* Cortex-M55 Helium: 128-bit integer vectors */
#endif
#if defined(__ARM_FEATURE_DSP) || defined(__ARM_FEATURE_SAT)
#include <arm_acle.h> /* Cortex-M4/M7/M33 DSP extension: two 16-bit multiply-accumulates per instruction */
#endif

/* The hot kernels keep -O2 code (unrolled inner loops) in a -Os build; their helpers are always inlined into them. */
#if defined(__GNUC__) && !defined(__clang__)
#define EK_HOT __attribute__((optimize("O2")))
#define EK_INLINE static inline __attribute__((always_inline))
#define EK_NOINLINE __attribute__((noinline))
#else
#define EK_HOT
#define EK_INLINE static inline
#define EK_NOINLINE
#endif

#define EK_INT32_MIN (-2147483647 - 1)
#define EK_INT32_MAX 2147483647

EK_INLINE int32_t ek_min(int32_t a, int32_t b) { return a < b ? a : b; }
EK_INLINE int32_t ek_max(int32_t a, int32_t b) { return a > b ? a : b; }
EK_INLINE int32_t ek_clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* ------------------------------------------------------------------------------------------------------------
 * Fixed-point primitives (gemmlowp's semantics).
 */

/* round(a * b / 2^31), rounding half away from zero, saturating the single overflow case. */
static inline int32_t ek_srdhm(int32_t a, int32_t b) {
  int64_t ab;
  int64_t nudge;
  if (a == b && a == EK_INT32_MIN) {
    return EK_INT32_MAX;
  }
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent, rounding half away from zero. */
static inline int32_t ek_rdbpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)((1u << exponent) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * 2^exponent, saturating (gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent). */
static inline int32_t ek_sat_shl(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) {
    return EK_INT32_MAX;
  }
  if (x < -threshold) {
    return EK_INT32_MIN;
  }
  return (int32_t)((uint32_t)x << exponent);
}

/* TFLite's MultiplyByQuantizedMultiplier: x * mult * 2^(shift - 31), rounded. */
static inline int32_t ek_requantize(int32_t x, int32_t mult, int32_t shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return ek_rdbpot(ek_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

static inline int ek_clz32(uint32_t x) {
#if defined(__GNUC__)
  return x == 0u ? 32 : __builtin_clz(x);
#else
  int n = 0;
  if (x == 0u) {
    return 32;
  }
  while ((x & 0x80000000u) == 0u) {
    x <<= 1;
    n++;
  }
  return n;
#endif
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8. */
static int32_t ek_exp_on_interval(int32_t a) {
  const int32_t constant_term = 1895147668;     /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883;  /* 1/3 */
  const int32_t x = a + ((int32_t)1 << 28);    /* a + 1/8 */
  const int32_t x2 = ek_srdhm(x, x);
  const int32_t x3 = ek_srdhm(x2, x);
  const int32_t x4 = ek_srdhm(x2, x2);
  const int32_t x4_over_4 = ek_rdbpot(x4, 2);
  const int32_t poly = ek_rdbpot(ek_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
  return constant_term + ek_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 given with `int_bits` integer bits; result in Q0.31. */
static int32_t ek_exp_on_negative_values(int32_t a, int int_bits) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int frac_bits = 31 - int_bits;
  const int32_t one_quarter = (int32_t)1 << (frac_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_quarter = (a & mask) - one_quarter;
  const int32_t remainder = a_mod_quarter_minus_quarter - a;
  int32_t result = ek_exp_on_interval(ek_sat_shl(a_mod_quarter_minus_quarter, int_bits));
  int exponent;
  for (exponent = -2; exponent <= 4; exponent++) {
    if (int_bits > exponent && (remainder & ((int32_t)1 << (frac_bits + exponent))) != 0) {
      result = ek_srdhm(result, multipliers[exponent + 2]);
    }
  }
  if (int_bits > 5 && a < -((int32_t)1 << (36 - int_bits))) {
    result = 0;
  }
  return a == 0 ? EK_INT32_MAX : result;
}

/* Newton-Raphson iterations shared by the two divisions below; returns x ~ 1/half_denominator in Q2.29. */
static int32_t ek_newton_reciprocal(int32_t half_denominator) {
  const int32_t constant_48_over_17 = 1515870810;
  const int32_t constant_neg_32_over_17 = -1010580540;
  int32_t x = constant_48_over_17 + ek_srdhm(half_denominator, constant_neg_32_over_17);
  int i;
  for (i = 0; i < 3; i++) {
    const int32_t one_minus = ((int32_t)1 << 29) - ek_srdhm(half_denominator, x);
    x = x + ek_sat_shl(ek_srdhm(x, one_minus), 2);
  }
  return x;
}

static int32_t ek_rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = (int64_t)a + (int64_t)b;
  return (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out. */
static int32_t ek_one_over_one_plus_x(int32_t a) {
  return ek_sat_shl(ek_newton_reciprocal(ek_rounding_half_sum(a, EK_INT32_MAX)), 1);
}

/* (1 - a) / (1 + a) for a in [0, 1), Q0.31 in and out. */
static int32_t ek_one_minus_x_over_one_plus_x(int32_t a) {
  return ek_sat_shl(ek_newton_reciprocal(ek_rounding_half_sum(a, EK_INT32_MAX)) - ((int32_t)1 << 29), 2);
}

/* ------------------------------------------------------------------------------------------------------------
 * Requantization of accumulators (convolutions, fully connected), the same result as ek_requantize in fewer
 * instructions. The multiplier is never negative, so the doubling high multiply cannot saturate and equals
 * floor((P) / 2^31) with P = acc * mult + 2^30 (gemmlowp's nudge-and-truncate, for both signs). For a right
 * shift e >= 1 the second rounding, floor((v + 2^(e-1) - [v < 0]) / 2^e), folds into the same 64-bit sum:
 * floor((floor(P / 2^31) + c) / 2^e) = floor((P + c * 2^31) / 2^(31 + e)), and [v < 0] may be read as
 * [acc < 0] (where they differ, both give 0). One multiply-accumulate and one shift of the high word.
 */

EK_INLINE int32_t ek_requantize_acc(int32_t acc, int32_t mult, int32_t shift) {
  if (shift < -1) { /* the usual case, nudge built word by word: c * 2^31 + 2^30 with c = 2^(e-1) - [acc < 0] */
    const int e = -shift;
    const uint32_t lo = 0x40000000u | ((uint32_t)acc & 0x80000000u);
    const int32_t hi = (int32_t)(1u << (e - 2)) - (acc < 0 ? 1 : 0);
    const int64_t nudge = (int64_t)(((uint64_t)(uint32_t)hi << 32) | lo);
    return (int32_t)(((int64_t)acc * mult + nudge) >> 32) >> (e - 1);
  }
  if (shift < 0) {
    const int e = -shift;
    const int32_t c = (int32_t)(1u << (e - 1)) - (acc < 0 ? 1 : 0); /* 2^(e-1) - [acc < 0] */
    const int64_t nudge = (int64_t)c * ((int64_t)1 << 31) + ((int64_t)1 << 30);
    return (int32_t)(((int64_t)acc * mult + nudge) >> 32) >> (e - 1);
  }
  acc = (int32_t)((uint32_t)acc << shift);
  return (int32_t)(((int64_t)acc * mult + ((int64_t)1 << 30)) >> 31);
}


/* ------------------------------------------------------------------------------------------------------------
 * SIMD primitives. On cores with the DSP extension (Cortex-M4/M7/M33/M55) they are single instructions; with
 * EK_EMULATE_DSP a host build runs the very same kernel code through portable equivalents (the tests do so).
 * Integer sums are exact, so neither the order of additions nor the path taken can change a result.
 */

#if defined(__ARM_FEATURE_DSP)
#define EK_SIMD 1
EK_INLINE uint32_t ek_sxtb16(uint32_t v) { return (uint32_t)__sxtb16(v); }
EK_INLINE uint32_t ek_sxtb16_ror8(uint32_t v) {
#if defined(__GNUC__)
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v)); /* one instruction; the intrinsics would take two */
  return r;
#else
  return (uint32_t)__sxtb16(__ror(v, 8));
#endif
}
EK_INLINE int32_t ek_smlad(uint32_t a, uint32_t b, int32_t acc) { return __smlad(a, b, acc); }
EK_INLINE int32_t ek_smlabb(uint32_t a, uint32_t b, int32_t acc) { return __smlabb(a, b, acc); }
EK_INLINE int32_t ek_smlatt(uint32_t a, uint32_t b, int32_t acc) { return __smlatt(a, b, acc); }
#elif defined(EK_EMULATE_DSP)
#define EK_SIMD 1
EK_INLINE int32_t ek_lo16(uint32_t v) { return (int16_t)(uint16_t)(v & 0xffffu); }
EK_INLINE int32_t ek_hi16(uint32_t v) { return (int16_t)(uint16_t)(v >> 16); }
EK_INLINE uint32_t ek_sxtb16(uint32_t v) {
  return (uint32_t)(uint16_t)(int16_t)(int8_t)(v & 0xffu) | ((uint32_t)(uint16_t)(int16_t)(int8_t)((v >> 16) & 0xffu) << 16);
}
EK_INLINE uint32_t ek_sxtb16_ror8(uint32_t v) { return ek_sxtb16((v >> 8) | (v << 24)); }
EK_INLINE int32_t ek_smlad(uint32_t a, uint32_t b, int32_t acc) {
  return acc + ek_lo16(a) * ek_lo16(b) + ek_hi16(a) * ek_hi16(b);
}
EK_INLINE int32_t ek_smlabb(uint32_t a, uint32_t b, int32_t acc) { return acc + ek_lo16(a) * ek_lo16(b); }
EK_INLINE int32_t ek_smlatt(uint32_t a, uint32_t b, int32_t acc) { return acc + ek_hi16(a) * ek_hi16(b); }
#else
#define EK_SIMD 0
#endif

#if EK_SIMD
EK_INLINE uint32_t ek_load4(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v)); /* one unaligned LDR on Cortex-M4 */
  return v;
}
#endif

/* floor((a * b + acc * 2^32 + 2^31) / 2^32): SMMLAR, a rounded high multiply-accumulate (DSP cores). */
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
EK_INLINE int32_t ek_smmlar(int32_t a, int32_t b, int32_t acc) {
  int32_t r;
  __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
#else
EK_INLINE int32_t ek_smmlar(int32_t a, int32_t b, int32_t acc) {
  return (int32_t)(((int64_t)a * b + (int64_t)acc * 4294967296LL + 2147483648LL) >> 32);
}
#endif

/* v clamped to [-128, 127]: one SSAT where the core has it. */
#if defined(__ARM_FEATURE_SAT)
EK_INLINE int32_t ek_ssat8(int32_t v) { return __ssat(v, 8); }
#else
EK_INLINE int32_t ek_ssat8(int32_t v) { return ek_clamp(v, -128, 127); }
#endif

/* ------------------------------------------------------------------------------------------------------------
 * Requantization of accumulators (convolutions, fully connected). The generator scales each output channel's
 * weights and bias by 2^(1 + left shift) (ek_kernels.h), so an accumulator holds X = 2^(1 + left) * acc, and rq[]
 * gives {mult, k, e, f} per channel: k = 2^(e-1), f = -1 for a right shift e >= 1, k = f = e = 0 otherwise.
 *
 * gemmlowp's doubling high multiply of acc * 2^left, with its nudge-and-truncate, is floor((acc * 2^left * mult +
 * 2^30) / 2^31) for both signs (mult is positive: it never saturates), which is SMMLAR's floor((X * mult + 2^31) /
 * 2^32): one instruction, that also adds k from its accumulator operand. TFLite's rounding divide by 2^e (half away
 * from zero) of that value v is floor((v + 2^(e-1) - [v < 0]) / 2^e), and [v < 0] may be read as [X < 0]: where
 * they differ v is 0 and both give 0; X >> 31 is -[X < 0], masked by f. So SMMLAR, AND, ADD, ASR per output. The
 * generator keeps |X| < 2^31, so nothing overflows (|v| < 2^30 and k <= 2^30).
 */

typedef struct {
  const int32_t *rq;
  int32_t step; /* 4: one set per output channel; 0: one set for all */
  int32_t out_zp, act_min, act_max;
} ek_requant_t;

static void ek_requant_init(ek_requant_t *q, const int32_t *rq, int32_t step, int32_t out_zp, int32_t act_min,
                            int32_t act_max) {
  q->rq = rq;
  q->step = step;
  q->out_zp = out_zp;
  q->act_min = act_min;
  q->act_max = act_max;
}

/* MultiplyByQuantizedMultiplier(x, mult, -e) + zp, saturated to int8, from 2x (|x| < 2^30; see above). */
EK_INLINE int32_t ek_rq2(int32_t x2, int32_t mult, int32_t k, int32_t f, int32_t e, int32_t zp) {
  return ek_ssat8(((ek_smmlar(x2, mult, k) + ((x2 >> 31) & f)) >> e) + zp);
}

EK_INLINE int32_t ek_rq_out(const int32_t *rq, int32_t acc, int32_t zp) {
  return ek_rq2(acc, rq[0], rq[1], rq[3], rq[2], zp);
}

/* A fused activation narrower than int8 clamps the n outputs just written (all the MLPerf Tiny models need none:
 * their ReLUs end at the int8 range), so that the hot loops only saturate. */
static void ek_activation_clamp(const ek_requant_t *q, int8_t *out, int32_t n) {
  int32_t i;
  if (q->act_min > -128 || q->act_max < 127) {
    for (i = 0; i < n; i++) {
      out[i] = (int8_t)ek_clamp(out[i], q->act_min, q->act_max);
    }
  }
}

/* Four accumulators, passed by value so that they stay in registers. */
typedef struct {
  int32_t a0, a1, a2, a3;
} ek_acc4_t;

/* ------------------------------------------------------------------------------------------------------------
 * Weight matrices (CONV_2D, FULLY_CONNECTED): int16, doubled, rows in pairs; per group of four columns a row holds
 * (w0, w2, w1, w3), the order SXTB16 and SXTB16 ROR #8 give the inputs in, and a pair holds row a's group then
 * row b's (ek_kernels.h). One pointer walks a pair; each weight word feeds an SMLAD with no extension.
 */

/* Inputs 4g .. 4g + 3 of x (n of them) as one word, zero past n (the weights are zero there). */
EK_INLINE uint32_t ek_group(const int8_t *x, int32_t g, int32_t n) {
  uint32_t v = 0;
  int32_t j;
#if EK_SIMD
  if (4 * g + 4 <= n) {
    return ek_load4(x + 4 * g);
  }
#endif
  for (j = 0; j < 4 && 4 * g + j < n; j++) {
    v |= (uint32_t)(uint8_t)x[4 * g + j] << (8 * j);
  }
  return v;
}

#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
/* Two pairs of rows (w0: rows o, o + 1; w1: rows o + 2, o + 3) times `full` groups of int8 inputs, scheduled by
 * hand: each input word is loaded and extended once (LDR, 2 SXTB16) for 8 SMLADs, and the weights come two words
 * per LDRD with write-back: 17 instructions per 16 multiply-accumulates. */
EK_INLINE ek_acc4_t ek_mac1x4(const int8_t *x, const uint32_t *w0, const uint32_t *w1, int32_t full, ek_acc4_t acc) {
  const int8_t *const end = x + 4 * full;
  uint32_t v, e, wa, wb;
  __asm__("cmp %[x], %[end]\n\t"
          "beq 2f\n"
          "1:\n\t"
          "ldr %[v], [%[x]], #4\n\t"
          "sxtb16 %[e], %[v]\n\t"
          "sxtb16 %[v], %[v], ror #8\n\t"
          "ldrd %[wa], %[wb], [%[w0]], #8\n\t"
          "smlad %[a0], %[e], %[wa], %[a0]\n\t"
          "smlad %[a0], %[v], %[wb], %[a0]\n\t"
          "ldrd %[wa], %[wb], [%[w0]], #8\n\t"
          "smlad %[a1], %[e], %[wa], %[a1]\n\t"
          "smlad %[a1], %[v], %[wb], %[a1]\n\t"
          "ldrd %[wa], %[wb], [%[w1]], #8\n\t"
          "smlad %[a2], %[e], %[wa], %[a2]\n\t"
          "smlad %[a2], %[v], %[wb], %[a2]\n\t"
          "ldrd %[wa], %[wb], [%[w1]], #8\n\t"
          "smlad %[a3], %[e], %[wa], %[a3]\n\t"
          "smlad %[a3], %[v], %[wb], %[a3]\n\t"
          "cmp %[x], %[end]\n\t"
          "bne 1b\n"
          "2:"
          : [a0] "+r"(acc.a0), [a1] "+r"(acc.a1), [a2] "+r"(acc.a2), [a3] "+r"(acc.a3), [x] "+r"(x), [w0] "+r"(w0),
            [w1] "+r"(w1), [v] "=&r"(v), [e] "=&r"(e), [wa] "=&r"(wa), [wb] "=&r"(wb)
          : [end] "r"(end)
          : "cc", "memory");
  return acc;
}
#endif

/* out[o] = requantized(bias[o] + sum_i x[i] * row_o[i]) for every row of the matrix: a fully connected layer,
 * or one output pixel of a convolution on a core without DSP. */
static EK_HOT void ek_matvec_pairs(const int8_t *x, int32_t n, const int16_t *weights, int32_t out_n,
                                   const int32_t *bias, const ek_requant_t *requant, int8_t *output) {
  const int32_t groups = (n + 3) / 4, zp = requant->out_zp, step = requant->step;
  const int32_t *const rq = requant->rq;
  int32_t o = 0, g;
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
  const int32_t full = n / 4;
  for (; o + 4 <= out_n; o += 4) { /* four rows at a time, the last partial group in C */
    const uint32_t *w0 = (const uint32_t *)(const void *)(weights + o * 4 * groups), *w1 = w0 + 4 * groups;
    ek_acc4_t acc;
    int8_t v0, v1, v2, v3;
    acc.a0 = bias[o];
    acc.a1 = bias[o + 1];
    acc.a2 = bias[o + 2];
    acc.a3 = bias[o + 3];
    acc = ek_mac1x4(x, w0, w1, full, acc);
    if (full < groups) {
      const uint32_t v = ek_group(x, full, n), xe = ek_sxtb16(v), xo = ek_sxtb16_ror8(v);
      w0 += 4 * full;
      w1 += 4 * full;
      acc.a0 = ek_smlad(xo, w0[1], ek_smlad(xe, w0[0], acc.a0));
      acc.a1 = ek_smlad(xo, w0[3], ek_smlad(xe, w0[2], acc.a1));
      acc.a2 = ek_smlad(xo, w1[1], ek_smlad(xe, w1[0], acc.a2));
      acc.a3 = ek_smlad(xo, w1[3], ek_smlad(xe, w1[2], acc.a3));
    }
    v0 = (int8_t)ek_rq_out(rq + o * step, acc.a0, zp);
    v1 = (int8_t)ek_rq_out(rq + (o + 1) * step, acc.a1, zp);
    v2 = (int8_t)ek_rq_out(rq + (o + 2) * step, acc.a2, zp);
    v3 = (int8_t)ek_rq_out(rq + (o + 3) * step, acc.a3, zp);
    output[o] = v0; /* stores after every load: an int8 store may alias anything the compiler cannot see */
    output[o + 1] = v1;
    output[o + 2] = v2;
    output[o + 3] = v3;
  }
#endif
  for (; o < out_n; o += 2) {
    const int32_t rows = o + 1 < out_n ? 2 : 1; /* 1: the plain row after the last pair */
    const int16_t *w = weights + o * 4 * groups;
    int32_t a = bias[o], b = rows == 2 ? bias[o + 1] : 0;
    int8_t va, vb;
#if EK_SIMD
    const uint32_t *w32 = (const uint32_t *)(const void *)w;
    if (rows == 2) {
      for (g = 0; g < groups; g++, w32 += 4) {
        const uint32_t v = ek_group(x, g, n), xe = ek_sxtb16(v), xo = ek_sxtb16_ror8(v);
        a = ek_smlad(xo, w32[1], ek_smlad(xe, w32[0], a));
        b = ek_smlad(xo, w32[3], ek_smlad(xe, w32[2], b));
      }
    } else {
      for (g = 0; g < groups; g++, w32 += 2) {
        const uint32_t v = ek_group(x, g, n);
        a = ek_smlad(ek_sxtb16_ror8(v), w32[1], ek_smlad(ek_sxtb16(v), w32[0], a));
      }
    }
#else
    for (g = 0; g < groups; g++, w += 4 * rows) {
      const uint32_t v = ek_group(x, g, n);
      const int32_t x0 = (int8_t)v, x1 = (int8_t)(v >> 8), x2 = (int8_t)(v >> 16), x3 = (int8_t)(v >> 24);
      a += x0 * w[0] + x2 * w[1] + x1 * w[2] + x3 * w[3];
      if (rows == 2) {
        b += x0 * w[4] + x2 * w[5] + x1 * w[6] + x3 * w[7];
      }
    }
#endif
    va = (int8_t)ek_rq_out(rq + o * step, a, zp);
    vb = (int8_t)ek_rq_out(rq + (o + 1) * step, b, zp);
    output[o] = va; /* stores after every load: an int8 store may alias anything the compiler cannot see */
    if (rows == 2) {
      output[o + 1] = vb;
    }
  }
  ek_activation_clamp(requant, output, out_n);
}

/* ------------------------------------------------------------------------------------------------------------
 * Convolutions. The bias has the input zero point folded in (bias - in_zp * sum(weights)), so a tap outside the
 * input is a tap that reads in_zp: border pixels gather their window into the scratch buffer with in_zp in
 * the padding, and every pixel runs the same multiply-accumulate loop, bit-exact with TFLite Micro's sum of
 * weight * (input - in_zp) over the taps inside.
 */

/* The taps of a window that fall inside the input, along one axis: [*first, *last). */
static void ek_window_range(int32_t origin, int32_t kernel, int32_t dilation, int32_t size, int32_t *first,
                            int32_t *last) {
  int32_t k0 = 0, k1 = kernel;
  while (k0 < kernel && origin + k0 * dilation < 0) {
    k0++;
  }
  while (k1 > k0 && origin + (k1 - 1) * dilation >= size) {
    k1--;
  }
  *first = k0;
  *last = k1;
}

/* The int8 inputs of one output pixel, n of them: in place for a contiguous window inside the input, else
 * gathered into col (in_zp where the window leaves the input; col's zero tail stays as it was set). */
static const int8_t *ek_conv_column(const ek_conv_params_t *p, const int8_t *input, int32_t pixel, int8_t *col,
                                    int32_t *n) {
  const int32_t in_w = p->in_w, in_c = p->in_c, k_h = p->k_h, k_w = p->k_w;
  const int32_t iy0 = pixel / p->out_w * p->stride_h - p->pad_top;
  const int32_t ix0 = pixel % p->out_w * p->stride_w - p->pad_left;
  int32_t ky0, ky1, kx0, kx1, ky, kx, i;
  int8_t *dst = col;
  ek_window_range(iy0, k_h, p->dil_h, p->in_h, &ky0, &ky1);
  ek_window_range(ix0, k_w, p->dil_w, in_w, &kx0, &kx1);
  /* a window of one contiguous row (1x1, 1xK) is read in place; taller windows are gathered into one column,
   * which costs less than a multiply-accumulate loop per window row */
  if (k_h == 1 && (p->dil_w == 1 || k_w == 1) && ky0 == 0 && ky1 == 1 && kx0 == 0 && kx1 == k_w) {
    *n = k_w * in_c;
    return input + (iy0 * in_w + ix0) * in_c;
  }
  for (ky = 0; ky < k_h; ky++) {
    const int32_t iy = iy0 + ky * p->dil_h;
    const int8_t *row = input + (iy * in_w + ix0) * in_c;
    if (ky >= ky0 && ky < ky1 && kx0 == 0 && kx1 == k_w && p->dil_w == 1) { /* a whole window row: one copy */
      i = 0;
#if EK_SIMD
      for (; i + 4 <= k_w * in_c; i += 4) {
        memcpy(dst + i, row + i, 4); /* an unaligned LDR and STR */
      }
#endif
      for (; i < k_w * in_c; i++) {
        dst[i] = row[i];
      }
      dst += k_w * in_c;
      continue;
    }
    for (kx = 0; kx < k_w; kx++, dst += in_c) {
      const int32_t inside = ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1;
      for (i = 0; i < in_c; i++) {
        dst[i] = inside ? row[kx * p->dil_w * in_c + i] : (int8_t)p->in_zp;
      }
    }
  }
  *n = k_h * k_w * in_c;
  return col;
}

#if EK_SIMD
/* Where the extended words of a pixel pair go: per group of four taps, pixel 0's two words then pixel 1's (SMLAD
 * path: every weight word loaded serves both pixels); on Helium each pixel's words are contiguous instead (one
 * vector load takes two groups of one pixel). EK_EXT_STEP: words from one group to the next of a pixel;
 * EK_EXT_SECOND(groups): where pixel 1 starts. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && defined(__GNUC__)
#define EK_MVE 1
#define EK_EXT_STEP 2
#define EK_EXT_SECOND(groups) (2 * (groups))
#else
#define EK_MVE 0
#define EK_EXT_STEP 4
#define EK_EXT_SECOND(groups) 2
#endif

/* One group of four int8 inputs, sign-extended: (x0, x2), (x1, x3). The extended buffer of a pixel pair holds,
 * per group, pixel 0's two words then pixel 1's, so that every weight word loaded serves both pixels. */
EK_INLINE void ek_extend_group(uint32_t v, uint32_t *out) {
  out[0] = ek_sxtb16(v);
  out[1] = ek_sxtb16_ror8(v);
}

/* n contiguous int8 inputs of one pixel into its extended words; zeros past n (the weights are zero there). */
static void ek_extend_column(const int8_t *x, int32_t n, uint32_t *out) {
  int32_t g;
  for (g = 0; g < (n + 3) / 4; g++, out += EK_EXT_STEP) {
    ek_extend_group(ek_group(x, g, n), out);
  }
}

/* Pixel `pixel`'s whole window straight from the input when in_c is a multiple of 4 (each tap is whole groups):
 * taps outside the input read in_zp. */
static void ek_extend_window(const ek_conv_params_t *p, const int8_t *input, int32_t pixel, uint32_t *out) {
  const int32_t in_w = p->in_w, in_c = p->in_c;
  const int32_t iy0 = pixel / p->out_w * p->stride_h - p->pad_top;
  const int32_t ix0 = pixel % p->out_w * p->stride_w - p->pad_left;
  const uint32_t zp4 = (uint32_t)(uint8_t)p->in_zp * 0x01010101u;
  int32_t ky0, ky1, kx0, kx1, ky, kx, i;
  ek_window_range(iy0, p->k_h, p->dil_h, p->in_h, &ky0, &ky1);
  ek_window_range(ix0, p->k_w, p->dil_w, in_w, &kx0, &kx1);
  for (ky = 0; ky < p->k_h; ky++) {
    for (kx = 0; kx < p->k_w; kx++) {
      if (ky < ky0 || ky >= ky1 || kx < kx0 || kx >= kx1) {
        for (i = 0; i < in_c; i += 4, out += EK_EXT_STEP) {
          ek_extend_group(zp4, out);
        }
      } else {
        const int8_t *x = input + ((iy0 + ky * p->dil_h) * in_w + ix0 + kx * p->dil_w) * in_c;
        for (i = 0; i < in_c; i += 4, out += EK_EXT_STEP) {
          ek_extend_group(ek_load4(x + i), out);
        }
      }
    }
  }
}

/* Two pixels times one pair of rows, per group of four taps: four input words (pixel 0's, pixel 1's) and four
 * weight words (row a's, row b's), every one of them read by two SMLADs: 8 SMLAD for 16 multiply-accumulates.
 * a0 = (pixel 0, row a), a1 = (pixel 1, row a), a2 = (pixel 0, row b), a3 = (pixel 1, row b). */
#if EK_MVE
/* Helium: eight int16 lanes, two groups of one pixel per vector (contiguous, see EK_EXT_SECOND) against two groups of
 * one row gathered from the pair layout (halfwords 0-3 and 8-11 of 16); VMLADAVA sums the eight products into a
 * 32-bit accumulator: 4 loads and 4 multiply-accumulate-across-vector instructions per 32 MACs, an odd last group
 * predicated (VCTP). Integer sums are exact, so the result is the SMLAD path's. */
EK_INLINE ek_acc4_t ek_mac2x2(const uint32_t *x, const uint32_t *w, int32_t groups, ek_acc4_t acc) {
  static const uint16_t rows[8] = {0, 1, 2, 3, 8, 9, 10, 11};
  const int16_t *x0 = (const int16_t *)(const void *)x, *x1 = x0 + 2 * EK_EXT_SECOND(groups);
  const int16_t *wa = (const int16_t *)(const void *)w;
  const uint16x8_t offsets = vld1q_u16(rows);
  int32_t j;
  for (j = 0; j + 8 <= 4 * groups; j += 8) { /* unpredicated: a VPST before each instruction would double them */
    const int16x8_t v0 = vldrhq_s16(x0 + j), v1 = vldrhq_s16(x1 + j);
    const int16x8_t ra = vldrhq_gather_shifted_offset_s16(wa + 2 * j, offsets);
    const int16x8_t rb = vldrhq_gather_shifted_offset_s16(wa + 2 * j + 4, offsets);
    acc.a0 = vmladavaq_s16(acc.a0, v0, ra);
    acc.a1 = vmladavaq_s16(acc.a1, v1, ra);
    acc.a2 = vmladavaq_s16(acc.a2, v0, rb);
    acc.a3 = vmladavaq_s16(acc.a3, v1, rb);
  }
  if (j < 4 * groups) { /* an odd last group: four lanes */
    const mve_pred16_t lanes = vctp16q(4);
    const int16x8_t v0 = vldrhq_z_s16(x0 + j, lanes), v1 = vldrhq_z_s16(x1 + j, lanes);
    const int16x8_t ra = vldrhq_z_s16(wa + 2 * j, lanes), rb = vldrhq_z_s16(wa + 2 * j + 4, lanes);
    acc.a0 = vmladavaq_p_s16(acc.a0, v0, ra, lanes);
    acc.a1 = vmladavaq_p_s16(acc.a1, v1, ra, lanes);
    acc.a2 = vmladavaq_p_s16(acc.a2, v0, rb, lanes);
    acc.a3 = vmladavaq_p_s16(acc.a3, v1, rb, lanes);
  }
  return acc;
}
#else
EK_INLINE ek_acc4_t ek_mac2x2(const uint32_t *x, const uint32_t *w, int32_t groups, ek_acc4_t acc) {
  const uint32_t *const end = w + 4 * groups;
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
  /* Two groups per iteration, scheduled by hand: one LDM takes a group's four input words (fixed registers, as
   * LDM wants them ascending), two LDRD with write-back take the weights, so a group costs 3 loads + 8 SMLAD
   * (GCC issues 8 single loads and spills). 11 registers stay live. */
  const uint32_t *const end2 = w + 4 * (groups & ~1);
  uint32_t wa, wb;
  __asm__("cmp %[w], %[end]\n\t"
          "beq 2f\n"
          "1:\n\t"
          "ldm %[x]!, {r4, r5, r6, r8}\n\t"
          "ldrd %[wa], %[wb], [%[w]], #8\n\t"
          "smlad %[a0], r4, %[wa], %[a0]\n\t"
          "smlad %[a0], r5, %[wb], %[a0]\n\t"
          "smlad %[a1], r6, %[wa], %[a1]\n\t"
          "smlad %[a1], r8, %[wb], %[a1]\n\t"
          "ldrd %[wa], %[wb], [%[w]], #8\n\t"
          "smlad %[a2], r4, %[wa], %[a2]\n\t"
          "smlad %[a2], r5, %[wb], %[a2]\n\t"
          "smlad %[a3], r6, %[wa], %[a3]\n\t"
          "smlad %[a3], r8, %[wb], %[a3]\n\t"
          "ldm %[x]!, {r4, r5, r6, r8}\n\t"
          "ldrd %[wa], %[wb], [%[w]], #8\n\t"
          "smlad %[a0], r4, %[wa], %[a0]\n\t"
          "smlad %[a0], r5, %[wb], %[a0]\n\t"
          "smlad %[a1], r6, %[wa], %[a1]\n\t"
          "smlad %[a1], r8, %[wb], %[a1]\n\t"
          "ldrd %[wa], %[wb], [%[w]], #8\n\t"
          "smlad %[a2], r4, %[wa], %[a2]\n\t"
          "smlad %[a2], r5, %[wb], %[a2]\n\t"
          "smlad %[a3], r6, %[wa], %[a3]\n\t"
          "smlad %[a3], r8, %[wb], %[a3]\n\t"
          "cmp %[w], %[end]\n\t"
          "bne 1b\n"
          "2:"
          : [a0] "+r"(acc.a0), [a1] "+r"(acc.a1), [a2] "+r"(acc.a2), [a3] "+r"(acc.a3), [x] "+r"(x), [w] "+r"(w),
            [wa] "=&r"(wa), [wb] "=&r"(wb)
          : [end] "r"(end2)
          : "r4", "r5", "r6", "r8", "cc", "memory");
#endif
  for (; w < end; w += 4, x += 4) {
    const uint32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
    acc.a0 = ek_smlad(x1, w[1], ek_smlad(x0, w[0], acc.a0));
    acc.a1 = ek_smlad(x3, w[1], ek_smlad(x2, w[0], acc.a1));
    acc.a2 = ek_smlad(x1, w[3], ek_smlad(x0, w[2], acc.a2));
    acc.a3 = ek_smlad(x3, w[3], ek_smlad(x2, w[2], acc.a3));
  }
  return acc;
}
#endif

/* Two output pixels of a convolution from their extended inputs: the rows a pair at a time, then the plain row
 * left over. out0 and out1 may be the same pixel (an odd last pixel pairs with itself). */
static EK_HOT void ek_conv_pixel_pair(const uint32_t *ext, int32_t groups, const int16_t *weights, int32_t out_n,
                                      const int32_t *bias, const ek_requant_t *requant, int8_t *out0,
                                      int8_t *out1) {
  const uint32_t *w = (const uint32_t *)(const void *)weights;
  const int32_t *rq = requant->rq, zp = requant->out_zp;
  int32_t o, g;
  for (o = 0; o + 2 <= out_n; o += 2, w += 4 * groups, rq += 8) {
    ek_acc4_t acc;
    int8_t v0, v1, v2, v3;
    acc.a0 = acc.a1 = bias[o];
    acc.a2 = acc.a3 = bias[o + 1];
    acc = ek_mac2x2(ext, w, groups, acc);
    v0 = (int8_t)ek_rq_out(rq, acc.a0, zp);
    v1 = (int8_t)ek_rq_out(rq, acc.a1, zp);
    v2 = (int8_t)ek_rq_out(rq + 4, acc.a2, zp);
    v3 = (int8_t)ek_rq_out(rq + 4, acc.a3, zp);
    out0[o] = v0; /* stores after every load: an int8 store may alias anything the compiler cannot see */
    out0[o + 1] = v2;
    out1[o] = v1;
    out1[o + 1] = v3;
  }
  if (o < out_n) {
    int32_t a0 = bias[o], a1 = bias[o];
    int8_t v0, v1;
    for (g = 0; g < groups; g++) {
      const uint32_t *x = ext + EK_EXT_STEP * g, *y = x + EK_EXT_SECOND(groups);
      a0 = ek_smlad(x[1], w[2 * g + 1], ek_smlad(x[0], w[2 * g], a0));
      a1 = ek_smlad(y[1], w[2 * g + 1], ek_smlad(y[0], w[2 * g], a1));
    }
    v0 = (int8_t)ek_rq_out(rq, a0, zp);
    v1 = (int8_t)ek_rq_out(rq, a1, zp);
    out0[o] = v0;
    out1[o] = v1;
  }
  ek_activation_clamp(requant, out0, out_n);
  ek_activation_clamp(requant, out1, out_n);
}
#endif

void ek_conv2d_s8(const ek_conv_params_t *p, const int8_t *input, int8_t *output, int8_t *scratch) {
  const int32_t out_c = p->out_c;
  const int32_t pixels = p->out_h * p->out_w;
  ek_requant_t q;
  int32_t pixel, n0;
  ek_requant_init(&q, p->rq, 4, p->out_zp, p->act_min, p->act_max);
#if EK_SIMD
  {
    const int32_t taps = p->k_h * p->k_w * p->in_c, groups = (taps + 3) / 4;
    uint32_t *ext = (uint32_t *)(void *)(scratch + (p->in_c % 4 == 0 ? 0 : 8 * groups));
    const int32_t pointwise = p->k_h == 1 && p->k_w == 1 && p->pad_top == 0 && p->pad_left == 0 && p->in_c % 4 == 0;
    for (pixel = 0; pixel < pixels; pixel += 2) { /* in raster order, pairs across row ends too */
      const int32_t second = pixel + 1 < pixels ? pixel + 1 : pixel;
      int8_t *out1 = output + (second - pixel) * out_c;
      if (pointwise) { /* 1x1, no padding: each window is in_c contiguous bytes, no window to search */
        const int8_t *x0 = input + ((pixel / p->out_w) * p->stride_h * p->in_w + pixel % p->out_w * p->stride_w) *
                                       p->in_c;
        const int8_t *x1 = input + ((second / p->out_w) * p->stride_h * p->in_w + second % p->out_w * p->stride_w) *
                                       p->in_c;
        uint32_t *e = ext;
        int32_t g;
        for (g = 0; g < groups; g++, e += EK_EXT_STEP) {
          const uint32_t v0 = ek_load4(x0 + 4 * g), v1 = ek_load4(x1 + 4 * g);
          e[0] = ek_sxtb16(v0);
          e[1] = ek_sxtb16_ror8(v0);
          e[EK_EXT_SECOND(groups)] = ek_sxtb16(v1);
          e[EK_EXT_SECOND(groups) + 1] = ek_sxtb16_ror8(v1);
        }
      } else if (p->in_c % 4 == 0) { /* every tap is whole groups: extended straight from the input */
        ek_extend_window(p, input, pixel, ext);
        ek_extend_window(p, input, second, ext + EK_EXT_SECOND(groups));
      } else { /* gathered first (two int8 columns in front of the extended buffer) */
        int32_t n1;
        const int8_t *x0 = ek_conv_column(p, input, pixel, scratch, &n0);
        const int8_t *x1 = ek_conv_column(p, input, second, scratch + 4 * groups, &n1);
        ek_extend_column(x0, n0, ext);
        ek_extend_column(x1, n1, ext + EK_EXT_SECOND(groups));
      }
      /* both windows are read before any output is written */
      ek_conv_pixel_pair(ext, groups, p->weights, out_c, p->bias, &q, output, out1);
      output = out1 + out_c;
    }
  }
#else
  for (pixel = 0; pixel < pixels; pixel++, output += out_c) {
    const int8_t *x0 = ek_conv_column(p, input, pixel, scratch, &n0);
    ek_matvec_pairs(x0, n0, p->weights, out_c, p->bias, &q, output);
  }
#endif
}

/* DEPTHWISE_CONV_2D with depth multiplier 1 and channels a multiple of 4 has its weights blocked (ek_kernels.h):
 * per block of four channels c..c+3 and per tap (w_c, w_c+2), (w_c+1, w_c+3), so that one LDRD gives the two
 * words SMLABB/SMLATT pair with SXTB16 and SXTB16 ROR #8 of four input bytes (channels stay apart: the bottom
 * halves multiply each other, then the tops). Other depthwise layers keep TFLite's order. */
#if EK_SIMD
/* Channels c..c+3 of one output pixel over `taps` taps (3x3 windows take ek_depthwise4_3x3 on DSP cores). */
EK_INLINE ek_acc4_t ek_depthwise4(const int8_t *const *src, int32_t c, const uint32_t *w, int32_t taps,
                                  ek_acc4_t acc) {
  int32_t t;
  for (t = 0; t < taps; t++, w += 2) {
    const uint32_t xv = ek_load4(src[t] + c), xe = ek_sxtb16(xv), xo = ek_sxtb16_ror8(xv);
    const uint32_t we = w[0], wo = w[1];
    acc.a0 = ek_smlabb(xe, we, acc.a0);
    acc.a2 = ek_smlatt(xe, we, acc.a2);
    acc.a1 = ek_smlabb(xo, wo, acc.a1);
    acc.a3 = ek_smlatt(xo, wo, acc.a3);
  }
  return acc;
}
#endif

#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
/* The 9 taps of a 3x3 window for channels c..c+3, by hand: per tap the input pointer, four input bytes, their
 * two SXTB16 words, one LDRD of weights and four SMLAxy (9 instructions for 4 multiply-accumulates). */
EK_INLINE ek_acc4_t ek_depthwise4_3x3(const int8_t *const *src, int32_t c, const uint32_t **wp, ek_acc4_t acc) {
  const uint32_t *w = *wp;
  const int8_t *ptr;
  uint32_t v, e, wa, wb;
  __asm__(".irp tap, 0, 4, 8, 12, 16, 20, 24, 28, 32\n\t"
          "ldr %[ptr], [%[src], #\\tap]\n\t"
          "ldr %[v], [%[ptr], %[c]]\n\t"
          "sxtb16 %[e], %[v]\n\t"
          "sxtb16 %[v], %[v], ror #8\n\t"
          "ldrd %[wa], %[wb], [%[w]], #8\n\t"
          "smlabb %[a0], %[e], %[wa], %[a0]\n\t"
          "smlatt %[a2], %[e], %[wa], %[a2]\n\t"
          "smlabb %[a1], %[v], %[wb], %[a1]\n\t"
          "smlatt %[a3], %[v], %[wb], %[a3]\n\t"
          ".endr"
          : [a0] "+r"(acc.a0), [a1] "+r"(acc.a1), [a2] "+r"(acc.a2), [a3] "+r"(acc.a3), [w] "+r"(w),
            [ptr] "=&r"(ptr), [v] "=&r"(v), [e] "=&r"(e), [wa] "=&r"(wa), [wb] "=&r"(wb)
          : [src] "r"(src), [c] "r"(c)
          : "memory");
  *wp = w; /* the next block's weights */
  return acc;
}

/* ek_rq_out into **out, by hand (GCC keeps too few values in registers here): two LDRD of the channel's rq[]
 * words, SMMLAR, AND, ADD, ASR, ADD, SSAT, STRB, the pointers stepping on (write-back). */
EK_INLINE void ek_requant1(int32_t acc, const int32_t **rq, int32_t zp, int8_t **out) {
  int32_t m, k, e, f;
  __asm__ volatile("ldrd %[m], %[k], [%[rq]], #8\n\t"
                   "ldrd %[e], %[f], [%[rq]], #8\n\t"
                   "smmlar %[k], %[acc], %[m], %[k]\n\t"
                   "and %[f], %[f], %[acc], asr #31\n\t"
                   "add %[k], %[k], %[f]\n\t"
                   "asr %[k], %[k], %[e]\n\t"
                   "add %[k], %[k], %[zp]\n\t"
                   "ssat %[k], #8, %[k]\n\t"
                   "strb %[k], [%[out]], #1"
                   : [m] "=&r"(m), [k] "=&r"(k), [e] "=&r"(e), [f] "=&r"(f), [rq] "+r"(*rq), [out] "+r"(*out)
                   : [acc] "r"(acc), [zp] "r"(zp)
                   : "memory");
}
#endif

#if EK_MVE
/* Four channels over `taps` taps: gathered inputs (blocked order) times the taps' weights, widened to 32 bits. */
EK_INLINE int32x4_t ek_depthwise_mve(const int8_t *const *src, int32_t c, const int16_t *w, int32_t taps,
                                     uint32x4_t lanes, int32x4_t acc) {
  int32_t t;
#pragma GCC unroll 9
  for (t = 0; t < taps; t++) {
    acc = vaddq_s32(acc, vmulq_s32(vldrbq_gather_offset_s32(src[t] + c, lanes), vldrhq_s32(w + 4 * t)));
  }
  return acc;
}
#endif

static EK_HOT void ek_depthwise_pixel(const ek_conv_params_t *p, const int8_t *const *src, const ek_requant_t *q,
                                      int8_t *output) {
  const int32_t out_c = p->out_c, taps = p->k_h * p->k_w, mult_c = p->depth_multiplier, zp = q->out_zp;
  const int32_t *bias = p->bias, *rq = q->rq;
  const int16_t *w16 = p->weights;
  int32_t c, t;
#if EK_MVE
  if (mult_c == 1 && out_c % 4 == 0) { /* Helium: four channels per 32-bit vector, in the blocked (c, c+2, c+1, c+3)
                                        * order, so inputs, biases and rq[] words are gathered in it and the
                                        * outputs scattered back */
    static const uint32_t order[4] = {0, 2, 1, 3}, words[4] = {0, 8, 4, 12};
    const uint32x4_t lanes = vld1q_u32(order), rq_lanes = vld1q_u32(words);
    const int32x4_t zero = vdupq_n_s32(0);
    for (c = 0; c < out_c; c += 4, w16 += 4 * taps, rq += 16) {
      int32x4_t acc = vldrwq_gather_shifted_offset_s32(bias + c, lanes), m, k, e, f, v;
      acc = taps == 9 ? ek_depthwise_mve(src, c, w16, 9, lanes, acc) : ek_depthwise_mve(src, c, w16, taps, lanes, acc);
      /* ek_rq2 lane by lane: VRMULH is SMMLAR without its accumulator, VSHL by -e the arithmetic right shift */
      m = vldrwq_gather_shifted_offset_s32(rq, rq_lanes);
      k = vldrwq_gather_shifted_offset_s32(rq + 1, rq_lanes);
      e = vldrwq_gather_shifted_offset_s32(rq + 2, rq_lanes);
      f = vldrwq_gather_shifted_offset_s32(rq + 3, rq_lanes);
      v = vaddq_s32(vrmulhq_s32(acc, m), k);
      v = vaddq_s32(v, vandq_s32(vshrq_n_s32(acc, 31), f));
      v = vaddq_n_s32(vshlq_s32(v, vsubq_s32(zero, e)), zp);
      v = vminq_s32(vmaxq_s32(v, vdupq_n_s32(-128)), vdupq_n_s32(127));
      vstrbq_scatter_offset_s32(output + c, lanes, v);
    }
  } else
#endif
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
  if (mult_c == 1 && out_c % 4 == 0 && taps == 9) { /* 3x3: every pointer steps on in the instructions that use it */
    const uint32_t *w = (const uint32_t *)(const void *)w16;
    int8_t *out = output;
    for (c = 0; c < out_c; c += 4, bias += 4) {
      ek_acc4_t acc;
      acc.a0 = bias[0];
      acc.a1 = bias[1];
      acc.a2 = bias[2];
      acc.a3 = bias[3];
      acc = ek_depthwise4_3x3(src, c, &w, acc);
      ek_requant1(acc.a0, &rq, zp, &out);
      ek_requant1(acc.a1, &rq, zp, &out);
      ek_requant1(acc.a2, &rq, zp, &out);
      ek_requant1(acc.a3, &rq, zp, &out);
    }
  } else
#endif
  if (mult_c == 1 && out_c % 4 == 0) {
    for (c = 0; c < out_c; c += 4, w16 += 4 * taps, rq += 16) {
      int32_t a0, a1, a2, a3;
      int8_t v0, v1, v2, v3;
#if EK_SIMD
      const uint32_t *w = (const uint32_t *)(const void *)w16;
      ek_acc4_t acc;
      acc.a0 = bias[c];
      acc.a1 = bias[c + 1];
      acc.a2 = bias[c + 2];
      acc.a3 = bias[c + 3];
      acc = ek_depthwise4(src, c, w, taps, acc);
      a0 = acc.a0;
      a1 = acc.a1;
      a2 = acc.a2;
      a3 = acc.a3;
#else
      const int16_t *w = w16;
      a0 = bias[c];
      a1 = bias[c + 1];
      a2 = bias[c + 2];
      a3 = bias[c + 3];
      for (t = 0; t < taps; t++, w += 4) {
        const int8_t *x = src[t] + c;
        a0 += x[0] * w[0];
        a2 += x[2] * w[1];
        a1 += x[1] * w[2];
        a3 += x[3] * w[3];
      }
#endif
      v0 = (int8_t)ek_rq_out(rq, a0, zp);
      v1 = (int8_t)ek_rq_out(rq + 4, a1, zp);
      v2 = (int8_t)ek_rq_out(rq + 8, a2, zp);
      v3 = (int8_t)ek_rq_out(rq + 12, a3, zp);
      output[c] = v0;
      output[c + 1] = v1;
      output[c + 2] = v2;
      output[c + 3] = v3;
    }
  } else {
    for (c = 0; c < out_c; c++, rq += 4) {
      const int32_t ic = c / mult_c;
      const int16_t *w = w16 + c;
      int32_t acc = bias[c];
      for (t = 0; t < taps; t++, w += out_c) {
        acc += (int32_t)*w * src[t][ic];
      }
      output[c] = (int8_t)ek_rq_out(rq, acc, zp);
    }
  }
  ek_activation_clamp(q, output, out_c);
}

void ek_depthwise_conv2d_s8(const ek_conv_params_t *p, const int8_t *input, int8_t *output, int8_t *scratch) {
  const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, out_c = p->out_c;
  const int32_t k_h = p->k_h, k_w = p->k_w;
  /* scratch: in_c bytes of in_zp (what a tap outside the input reads), then one input pointer per tap */
  const int8_t **src = (const int8_t **)(void *)(scratch + ((in_c + 7) & ~7));
  ek_requant_t q;
  int32_t oy, ox, ky, kx, t, c;
  ek_requant_init(&q, p->rq, 4, p->out_zp, p->act_min, p->act_max);
  for (c = 0; c < in_c; c++) {
    scratch[c] = (int8_t)p->in_zp;
  }
  for (oy = 0; oy < p->out_h; oy++) {
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t ky0, ky1, was_inside = 0;
    ek_window_range(iy0, k_h, p->dil_h, in_h, &ky0, &ky1);
    for (ox = 0; ox < p->out_w; ox++, output += out_c) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      const int32_t inside = ky0 == 0 && ky1 == k_h && ix0 >= 0 && ix0 + (k_w - 1) * p->dil_w < in_w;
      if (inside && was_inside) { /* the window moved right inside the input: every tap steps on */
        for (t = 0; t < k_h * k_w; t++) {
          src[t] += p->stride_w * in_c;
        }
      } else {
        int32_t kx0, kx1;
        ek_window_range(ix0, k_w, p->dil_w, in_w, &kx0, &kx1);
        for (ky = 0, t = 0; ky < k_h; ky++) {
          const int8_t *row = input + ((iy0 + ky * p->dil_h) * in_w + ix0) * in_c;
          for (kx = 0; kx < k_w; kx++, t++) {
            const int32_t in = ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1;
            src[t] = in ? row + kx * p->dil_w * in_c : scratch;
          }
        }
      }
      was_inside = inside;
      ek_depthwise_pixel(p, src, &q, output);
    }
  }
}

void ek_fully_connected_s8(const ek_fc_params_t *p, const int8_t *input, int8_t *output) {
  const int32_t in_n = p->in_n, out_n = p->out_n;
  ek_requant_t q;
  int32_t b;
  ek_requant_init(&q, p->rq, p->per_channel ? 4 : 0, p->out_zp, p->act_min, p->act_max);
  for (b = 0; b < p->batches; b++) {
    ek_matvec_pairs(input, in_n, p->weights, out_n, p->bias, &q, output);
    input += in_n;
    output += out_n;
  }
}

/* ------------------------------------------------------------------------------------------------------------
 * Pooling.
 */

/* AVERAGE_POOL_2D (is_max 0) and MAX_POOL_2D (is_max 1) walk the same window: the taps inside the input. */
static inline void ek_pool_s8(const ek_pool_params_t *p, const int8_t *input, int8_t *output, int32_t is_max) {
  const int32_t channels = p->channels;
  int32_t oy, ox, c, y, x;
  for (oy = 0; oy < p->out_h; oy++) {
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    const int32_t y0 = ek_max(0, iy0), y1 = ek_min(p->in_h, iy0 + p->k_h);
    for (ox = 0; ox < p->out_w; ox++) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      const int32_t x0 = ek_max(0, ix0), x1 = ek_min(p->in_w, ix0 + p->k_w);
      const int32_t count = (y1 - y0) * (x1 - x0);
      for (c = 0; c < channels; c++) {
        int32_t acc = is_max ? -128 : 0;
        for (y = y0; y < y1; y++) {
          const int8_t *row = input + (y * p->in_w) * channels + c;
          for (x = x0; x < x1; x++) {
            acc = is_max ? ek_max(acc, row[x * channels]) : acc + row[x * channels];
          }
        }
        if (!is_max && count > 0) { /* TFLite rounds half away from zero */
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        }
        *output++ = (int8_t)ek_clamp(acc, p->act_min, p->act_max);
      }
    }
  }
}

void ek_avg_pool_s8(const ek_pool_params_t *p, const int8_t *input, int8_t *output) {
  ek_pool_s8(p, input, output, 0);
}

void ek_max_pool_s8(const ek_pool_params_t *p, const int8_t *input, int8_t *output) {
  ek_pool_s8(p, input, output, 1);
}

/* ------------------------------------------------------------------------------------------------------------
 * Elementwise.
 */

static inline int8_t ek_add_one(const ek_binary_params_t *p, int32_t a, int32_t b) {
  const int32_t sa = ek_requantize((a + p->a_offset) * (1 << p->left_shift), p->a_mult, p->a_shift);
  const int32_t sb = ek_requantize((b + p->b_offset) * (1 << p->left_shift), p->b_mult, p->b_shift);
  const int32_t out = ek_requantize(sa + sb, p->out_mult, p->out_shift) + p->out_zp;
  return (int8_t)ek_clamp(out, p->act_min, p->act_max);
}

static inline int8_t ek_mul_one(const ek_binary_params_t *p, int32_t a, int32_t b) {
  const int32_t out = ek_requantize((a + p->a_offset) * (b + p->b_offset), p->out_mult, p->out_shift) + p->out_zp;
  return (int8_t)ek_clamp(out, p->act_min, p->act_max);
}

/* Visits the output in raster order; broadcast inputs step with stride 0 along their size-1 dimensions. */
#define EK_BINARY_LOOP(ONE)                                                                                  \
  do {                                                                                                       \
    if (!p->broadcast) {                                                                                     \
      const int32_t n = p->dims[0] * p->dims[1] * p->dims[2] * p->dims[3];                                   \
      int32_t i;                                                                                             \
      for (i = 0; i < n; i++) {                                                                              \
        output[i] = ONE(p, a[i], b[i]);                                                                      \
      }                                                                                                      \
    } else {                                                                                                 \
      int32_t i0, i1, i2, i3;                                                                                \
      for (i0 = 0; i0 < p->dims[0]; i0++) {                                                                  \
        for (i1 = 0; i1 < p->dims[1]; i1++) {                                                                \
          for (i2 = 0; i2 < p->dims[2]; i2++) {                                                              \
            const int8_t *ra = a + i0 * p->a_strides[0] + i1 * p->a_strides[1] + i2 * p->a_strides[2];       \
            const int8_t *rb = b + i0 * p->b_strides[0] + i1 * p->b_strides[1] + i2 * p->b_strides[2];       \
            for (i3 = 0; i3 < p->dims[3]; i3++) {                                                            \
              *output++ = ONE(p, ra[i3 * p->a_strides[3]], rb[i3 * p->b_strides[3]]);                        \
            }                                                                                                \
          }                                                                                                  \
        }                                                                                                    \
      }                                                                                                      \
    }                                                                                                        \
  } while (0)

/* TFLite's MultiplyByQuantizedMultiplier(x, mult, -e) for e >= 0, given 2x (|x| < 2^30): as ek_rq2, unsaturated. */
EK_INLINE int32_t ek_rescale2(int32_t x2, int32_t mult, int32_t k, int32_t f, int32_t e) {
  return (ek_smmlar(x2, mult, k) + ((x2 >> 31) & f)) >> e;
}

/* ADD of same-shape inputs when every shift is a right shift (the usual case): each input rescaled, summed and
 * requantized with three SMMLARs (ek_rescale2), about 20 instructions per element instead of three 64-bit
 * multiplies; (a + a_offset) << 21 is twice TFLite's (a + a_offset) << 20 and stays under 2^29. */
static EK_HOT void ek_add_fast(const ek_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *output,
                               int32_t n) {
  const int32_t ea = -p->a_shift, eb = -p->b_shift, eo = -p->out_shift;
  const int32_t ka = ea ? 1 << (ea - 1) : 0, kb = eb ? 1 << (eb - 1) : 0, ko = eo ? 1 << (eo - 1) : 0;
  const int32_t fa = ea ? -1 : 0, fb = eb ? -1 : 0, fo = eo ? -1 : 0;
  const int32_t ma = p->a_mult, mb = p->b_mult, mo = p->out_mult;
  const int32_t oa = p->a_offset * (1 << 21), ob = p->b_offset * (1 << 21), zp = p->out_zp;
  const int32_t lo = p->act_min, hi = p->act_max, narrow = lo > -128 || hi < 127;
  int32_t i;
  for (i = 0; i < n; i++) {
    const int32_t sa = ek_rescale2(a[i] * (1 << 21) + oa, ma, ka, fa, ea);
    const int32_t sb = ek_rescale2(b[i] * (1 << 21) + ob, mb, kb, fb, eb);
    int32_t t = ek_rq2((sa + sb) * 2, mo, ko, fo, eo, zp);
    if (narrow) {
      t = ek_clamp(t, lo, hi);
    }
    output[i] = (int8_t)t;
  }
}

void ek_add_s8(const ek_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *output) {
  if (!p->broadcast && p->left_shift == 20 && p->a_shift <= 0 && p->b_shift <= 0 && p->out_shift <= 0) {
    ek_add_fast(p, a, b, output, p->dims[0] * p->dims[1] * p->dims[2] * p->dims[3]);
    return;
  }
  EK_BINARY_LOOP(ek_add_one);
}

void ek_mul_s8(const ek_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *output) {
  EK_BINARY_LOOP(ek_mul_one);
}

/* ------------------------------------------------------------------------------------------------------------
 * Softmax, logistic, tanh.
 */

void ek_softmax_s8(const ek_softmax_params_t *p, const int8_t *input, int8_t *output) {
  const int32_t depth = p->depth;
  int32_t r, c;
  for (r = 0; r < p->rows; r++) {
    const int8_t *row = input + r * depth;
    int8_t *out = output + r * depth;
    int32_t max_in_row = -128;
    int32_t sum_of_exps = 0; /* Q12.19 */
    int32_t headroom, num_bits_over_unit, shifted_scale;
    for (c = 0; c < depth; c++) {
      max_in_row = ek_max(max_in_row, row[c]);
    }
    for (c = 0; c < depth; c++) {
      const int32_t diff = row[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t scaled = ek_srdhm(diff * (1 << p->input_left_shift), p->input_mult); /* Q5.26 */
        sum_of_exps += ek_rdbpot(ek_exp_on_negative_values(scaled, 5), 12);
      }
    }
    headroom = ek_clz32((uint32_t)sum_of_exps);
    num_bits_over_unit = 12 - headroom;
    shifted_scale = ek_one_over_one_plus_x((int32_t)(((uint32_t)sum_of_exps << headroom) - ((uint32_t)1 << 31)));
    for (c = 0; c < depth; c++) {
      const int32_t diff = row[c] - max_in_row;
      int32_t value = -128;
      if (diff >= p->diff_min) {
        const int32_t scaled = ek_srdhm(diff * (1 << p->input_left_shift), p->input_mult);
        const int32_t e = ek_exp_on_negative_values(scaled, 5);
        value = ek_clamp(ek_rdbpot(ek_srdhm(shifted_scale, e), num_bits_over_unit + 31 - 8) - 128, -128, 127);
      }
      out[c] = (int8_t)value;
    }
  }
}

/* sigmoid(a) for a in Q4.27, as int8 (output scale 1/256, zero point -128). */
static int32_t ek_logistic_q4_27(int32_t a) {
  int32_t y = (int32_t)1 << 30; /* Q0.31 */
  if (a != 0) {
    const int32_t positive = ek_one_over_one_plus_x(ek_exp_on_negative_values(a > 0 ? -a : a, 4));
    y = a > 0 ? positive : EK_INT32_MAX - positive;
  }
  return ek_clamp(ek_rdbpot(y, 23) - 128, -128, 127);
}

/* tanh(a) for a in Q4.27, as int8 (output scale 1/128, zero point 0). */
static int32_t ek_tanh_q4_27(int32_t a) {
  int32_t y = 0; /* Q0.31 */
  if (a != 0) {
    const int32_t t = ek_one_minus_x_over_one_plus_x(ek_exp_on_negative_values(a < 0 ? a : -a, 5));
    y = a < 0 ? -t : t;
  }
  return ek_clamp(ek_rdbpot(y, 24), -128, 127);
}

/* LOGISTIC and TANH: saturated outside +-range_radius, else the input rescaled to Q4.27 and mapped. */
static void ek_activation_s8(const ek_activation_params_t *p, const int8_t *input, int8_t *output,
                             int32_t (*function)(int32_t)) {
  int32_t i;
  for (i = 0; i < p->size; i++) {
    const int32_t x = input[i] - p->in_zp;
    int32_t value;
    if (x <= -p->range_radius) {
      value = -128;
    } else if (x >= p->range_radius) {
      value = 127;
    } else {
      value = function(ek_requantize(x, p->mult, p->left_shift));
    }
    output[i] = (int8_t)value;
  }
}

void ek_logistic_s8(const ek_activation_params_t *p, const int8_t *input, int8_t *output) {
  ek_activation_s8(p, input, output, ek_logistic_q4_27);
}

void ek_tanh_s8(const ek_activation_params_t *p, const int8_t *input, int8_t *output) {
  ek_activation_s8(p, input, output, ek_tanh_q4_27);
}

/* ------------------------------------------------------------------------------------------------------------
 * Quantize, dequantize, mean, pad, copies.
 */

/* round half away from zero, as TfLiteRound / roundf, without libm. */
static float ek_roundf(float x) {
  float t;
  if (!(x > -8388608.0f && x < 8388608.0f)) {
    return x; /* already an integer (or NaN) */
  }
  t = (float)(int32_t)x;
  if (x - t >= 0.5f) {
    t += 1.0f;
  } else if (t - x >= 0.5f) {
    t -= 1.0f;
  }
  return t;
}

void ek_quantize_f32_s8(int32_t size, float scale, int32_t zp, const float *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < size; i++) {
    const float q = ek_roundf(input[i] / scale);
    int32_t v;
    if (q >= 1073741824.0f) {
      v = 127;
    } else if (q <= -1073741824.0f || q != q) {
      v = -128;
    } else {
      v = ek_clamp((int32_t)q + zp, -128, 127);
    }
    output[i] = (int8_t)v;
  }
}

void ek_requantize_s8(int32_t size, int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp,
                      const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < size; i++) {
    output[i] = (int8_t)ek_clamp(ek_requantize(input[i] - in_zp, mult, shift) + out_zp, -128, 127);
  }
}

void ek_dequantize_s8_f32(int32_t size, float scale, int32_t zp, const int8_t *input, float *output) {
  int32_t i;
  for (i = size - 1; i >= 0; i--) { /* backwards: the float output may start where the int8 input starts */
    output[i] = scale * (float)(input[i] - zp);
  }
}

void ek_mean_s8(const ek_mean_params_t *p, const int8_t *input, int8_t *output) {
  const int32_t inner = p->inner, reduce = p->reduce;
  int32_t o, i, r;
  for (o = 0; o < p->outer; o++) {
    const int8_t *block = input + o * reduce * inner;
    for (i = 0; i < inner; i++) {
      int32_t sum = 0;
      int32_t value;
      for (r = 0; r < reduce; r++) {
        sum += block[r * inner + i];
      }
      value = ek_requantize(sum - p->in_zp * reduce, p->mult, p->shift) + p->out_zp;
      *output++ = (int8_t)ek_clamp(value, -128, 127);
    }
  }
}

void ek_pad_s8(const ek_pad_params_t *p, const int8_t *input, int8_t *output) {
  const int32_t *in_dims = p->in_dims;
  int32_t i0, i1, i2, i3;
  for (i0 = 0; i0 < p->out_dims[0]; i0++) {
    const int32_t j0 = i0 - p->before[0];
    for (i1 = 0; i1 < p->out_dims[1]; i1++) {
      const int32_t j1 = i1 - p->before[1];
      for (i2 = 0; i2 < p->out_dims[2]; i2++) {
        const int32_t j2 = i2 - p->before[2];
        const int32_t row_inside = j0 >= 0 && j0 < in_dims[0] && j1 >= 0 && j1 < in_dims[1] && j2 >= 0 &&
                                   j2 < in_dims[2];
        const int32_t row_start = row_inside ? ((j0 * in_dims[1] + j1) * in_dims[2] + j2) * in_dims[3] : 0;
        for (i3 = 0; i3 < p->out_dims[3]; i3++) {
          const int32_t j3 = i3 - p->before[3];
          *output++ = (row_inside && j3 >= 0 && j3 < in_dims[3]) ? input[row_start + j3] : (int8_t)p->value;
        }
      }
    }
  }
}

void ek_copy_blocks(int32_t rows, int32_t block, int32_t out_stride, const int8_t *input, int8_t *output) {
  int32_t r, i;
  for (r = 0; r < rows; r++) {
    for (i = 0; i < block; i++) {
      output[i] = input[i];
    }
    input += block;
    output += out_stride;
  }
}
