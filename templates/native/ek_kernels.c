/* ek_kernels.c - int8 kernels of edgekit's native backend, bit-exact with TensorFlow Lite Micro.
 *
 * The integer arithmetic follows TFLite Micro's reference kernels: a 32-bit accumulator per output, then the
 * fixed-point requantization (a saturating, rounding doubling high multiply followed by a rounding right
 * shift), the output zero point and the activation clamp. Softmax, logistic and tanh use the same gemmlowp
 * fixed-point exp/reciprocal approximations as TFLite. No libm, no allocation, no global state.
 */
#include "ek_kernels.h"

#include <string.h>

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h> /* Cortex-M4/M7/M33 DSP extension: two 16-bit multiply-accumulates per instruction */
#endif

#define EK_INT32_MIN (-2147483647 - 1)
#define EK_INT32_MAX 2147483647

static inline int32_t ek_min(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t ek_max(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int32_t ek_clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

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

static inline int32_t ek_requantize_acc(int32_t acc, int32_t mult, int32_t shift) {
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

static inline int8_t ek_output_s8(int32_t acc, int32_t mult, int32_t shift, int32_t out_zp, int32_t act_min,
                                  int32_t act_max) {
  return (int8_t)ek_clamp(ek_requantize_acc(acc, mult, shift) + out_zp, act_min, act_max);
}

/* ------------------------------------------------------------------------------------------------------------
 * SIMD primitives. On cores with the DSP extension (Cortex-M4/M7/M33/M55) they are single instructions; with
 * EK_EMULATE_DSP a host build runs the very same kernel code through portable equivalents (the tests do so).
 * Integer sums are exact, so neither the order of additions nor the path taken can change a result.
 */

#if defined(__ARM_FEATURE_DSP)
#define EK_SIMD 1
static inline uint32_t ek_sxtb16(uint32_t v) { return (uint32_t)__sxtb16(v); }
static inline uint32_t ek_sxtb16_ror8(uint32_t v) {
#if defined(__GNUC__)
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v)); /* one instruction; the intrinsics would take two */
  return r;
#else
  return (uint32_t)__sxtb16(__ror(v, 8));
#endif
}
static inline int32_t ek_smlad(uint32_t a, uint32_t b, int32_t acc) { return __smlad(a, b, acc); }
static inline int32_t ek_smlabb(uint32_t a, uint32_t b, int32_t acc) { return __smlabb(a, b, acc); }
static inline int32_t ek_smlatt(uint32_t a, uint32_t b, int32_t acc) { return __smlatt(a, b, acc); }
#elif defined(EK_EMULATE_DSP)
#define EK_SIMD 1
static inline int32_t ek_lo16(uint32_t v) { return (int16_t)(uint16_t)(v & 0xffffu); }
static inline int32_t ek_hi16(uint32_t v) { return (int16_t)(uint16_t)(v >> 16); }
static inline uint32_t ek_sxtb16(uint32_t v) {
  return (uint32_t)(uint16_t)(int16_t)(int8_t)(v & 0xffu) | ((uint32_t)(uint16_t)(int16_t)(int8_t)((v >> 16) & 0xffu) << 16);
}
static inline uint32_t ek_sxtb16_ror8(uint32_t v) { return ek_sxtb16((v >> 8) | (v << 24)); }
static inline int32_t ek_smlad(uint32_t a, uint32_t b, int32_t acc) {
  return acc + ek_lo16(a) * ek_lo16(b) + ek_hi16(a) * ek_hi16(b);
}
static inline int32_t ek_smlabb(uint32_t a, uint32_t b, int32_t acc) { return acc + ek_lo16(a) * ek_lo16(b); }
static inline int32_t ek_smlatt(uint32_t a, uint32_t b, int32_t acc) { return acc + ek_hi16(a) * ek_hi16(b); }
#else
#define EK_SIMD 0
#endif

#if EK_SIMD
static inline uint32_t ek_load4(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v)); /* one unaligned LDR on Cortex-M4 */
  return v;
}
#endif

/* ------------------------------------------------------------------------------------------------------------
 * Dot products, the inner loop of convolutions and fully connected layers. Weight rows come in blocks of four,
 * interleaved by groups of four inputs (see ek_kernels.h), so one pointer walks all four rows; a row outside
 * any block is plain. Both sides are sign-extended the same way (bytes 0,2 then 1,3), so SMLAD pairs match.
 */

/* Four accumulators, passed by value so that they stay in registers. */
typedef struct {
  int32_t a0, a1, a2, a3;
} ek_acc4_t;

/* acc.ak += sum_i x[i] * row_k[i], i < n, for the four rows of an interleaved block. */
static inline ek_acc4_t ek_dot_block4(const int8_t *x, const int8_t *w, int32_t n, ek_acc4_t acc) {
  int32_t i = 0, j;
#if EK_SIMD
#if defined(__GNUC__)
  w = (const int8_t *)__builtin_assume_aligned(w, 4); /* the generator aligns weight blocks: LDRD pairs */
#endif
  for (; i + 4 <= n; i += 4, w += 16) {
    const uint32_t xv = ek_load4(x + i);
    const uint32_t xe = ek_sxtb16(xv), xo = ek_sxtb16_ror8(xv);
    uint32_t wv = ek_load4(w);
    acc.a0 = ek_smlad(xo, ek_sxtb16_ror8(wv), ek_smlad(xe, ek_sxtb16(wv), acc.a0));
    wv = ek_load4(w + 4);
    acc.a1 = ek_smlad(xo, ek_sxtb16_ror8(wv), ek_smlad(xe, ek_sxtb16(wv), acc.a1));
    wv = ek_load4(w + 8);
    acc.a2 = ek_smlad(xo, ek_sxtb16_ror8(wv), ek_smlad(xe, ek_sxtb16(wv), acc.a2));
    wv = ek_load4(w + 12);
    acc.a3 = ek_smlad(xo, ek_sxtb16_ror8(wv), ek_smlad(xe, ek_sxtb16(wv), acc.a3));
  }
#else
  for (; i + 4 <= n; i += 4, w += 16) {
    const int32_t x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
    acc.a0 += x0 * w[0] + x1 * w[1] + x2 * w[2] + x3 * w[3];
    acc.a1 += x0 * w[4] + x1 * w[5] + x2 * w[6] + x3 * w[7];
    acc.a2 += x0 * w[8] + x1 * w[9] + x2 * w[10] + x3 * w[11];
    acc.a3 += x0 * w[12] + x1 * w[13] + x2 * w[14] + x3 * w[15];
  }
#endif
  for (j = 0; i + j < n; j++) { /* the last group, zero-padded in the weights */
    const int32_t xv = x[i + j];
    acc.a0 += xv * w[j];
    acc.a1 += xv * w[4 + j];
    acc.a2 += xv * w[8 + j];
    acc.a3 += xv * w[12 + j];
  }
  return acc;
}

/* acc + sum_i x[i] * w[i], i < n, for a plain row. */
static inline int32_t ek_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t acc) {
  int32_t i = 0;
#if EK_SIMD
  for (; i + 4 <= n; i += 4) {
    const uint32_t xv = ek_load4(x + i), wv = ek_load4(w + i);
    acc = ek_smlad(ek_sxtb16_ror8(xv), ek_sxtb16_ror8(wv), ek_smlad(ek_sxtb16(xv), ek_sxtb16(wv), acc));
  }
#endif
  for (; i < n; i++) {
    acc += (int32_t)x[i] * w[i];
  }
  return acc;
}

/* How accumulators become int8 outputs: per-channel (or one) multiplier and shift, zero point, clamp. */
typedef struct {
  const int32_t *mult;
  const int8_t *shift;
  int32_t per_channel, out_zp, act_min, act_max;
} ek_requant_t;

static inline int8_t ek_requant_output(const ek_requant_t *q, int32_t channel, int32_t acc) {
  const int32_t c = q->per_channel ? channel : 0;
  return ek_output_s8(acc, q->mult[c], q->shift[c], q->out_zp, q->act_min, q->act_max);
}

static inline ek_acc4_t ek_bias4(const int32_t *bias) {
  ek_acc4_t acc;
  acc.a0 = bias[0];
  acc.a1 = bias[1];
  acc.a2 = bias[2];
  acc.a3 = bias[3];
  return acc;
}

/* Outputs channel .. channel + 3 from four accumulators. */
static inline void ek_output4(const ek_requant_t *q, int32_t channel, ek_acc4_t acc, int8_t *output) {
  const int8_t v0 = ek_requant_output(q, channel, acc.a0), v1 = ek_requant_output(q, channel + 1, acc.a1);
  const int8_t v2 = ek_requant_output(q, channel + 2, acc.a2), v3 = ek_requant_output(q, channel + 3, acc.a3);
  output[0] = v0; /* stores after every load: an int8 store may alias anything the compiler cannot see */
  output[1] = v1;
  output[2] = v2;
  output[3] = v3;
}

/* out[o] for every row o of a weight matrix (see ek_kernels.h) times the n inputs x: a fully connected layer,
 * or one output pixel of a convolution (its window read in place or gathered into a column). */
static void ek_matvec_s8(const int8_t *x, int32_t n, const int8_t *weights, int32_t n_padded, int32_t out_n,
                         const int32_t *bias, const ek_requant_t *requant, int8_t *output) {
  const ek_requant_t local = *requant, *q = &local; /* a copy in registers: output stores cannot alias it */
  const int32_t full = out_n & ~3;
  int32_t o;
  for (o = 0; o < full; o += 4) {
    const int8_t *w = weights + o * n_padded;
    ek_output4(q, o, ek_dot_block4(x, w, n, ek_bias4(bias + o)), output + o);
  }
  for (; o < out_n; o++) {
    const int8_t *w = weights + o * n_padded;
    output[o] = ek_requant_output(q, o, ek_dot_s8(x, w, n, bias[o]));
  }
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
    for (kx = 0; kx < k_w; kx++, dst += in_c) {
      if (ky < ky0 || ky >= ky1 || kx < kx0 || kx >= kx1) {
        memset(dst, p->in_zp, (size_t)in_c);
      } else if (in_c >= 8) {
        memcpy(dst, input + (iy * in_w + ix0 + kx * p->dil_w) * in_c, (size_t)in_c);
      } else {
        const int8_t *x = input + (iy * in_w + ix0 + kx * p->dil_w) * in_c;
        for (i = 0; i < in_c; i++) {
          dst[i] = x[i];
        }
      }
    }
  }
  *n = (k_h * k_w * in_c + 3) & ~3;
  return col;
}

#if EK_SIMD
/* One group of four int8 inputs, sign-extended: (x0, x2), (x1, x3). The extended buffer of a pixel pair holds,
 * per group, pixel 0's two words then pixel 1's, so that every weight word loaded serves both pixels. */
static inline void ek_extend_group(uint32_t v, uint32_t *out) {
  out[0] = ek_sxtb16(v);
  out[1] = ek_sxtb16_ror8(v);
}

/* n contiguous int8 inputs of one pixel into its extended words; zeros past n (the weights are zero there). */
static void ek_extend_column(const int8_t *x, int32_t n, uint32_t *out) {
  int32_t i, j;
  for (i = 0; i + 4 <= n; i += 4, out += 4) {
    ek_extend_group(ek_load4(x + i), out);
  }
  if (i < n) {
    uint32_t v = 0;
    for (j = 0; i + j < n; j++) {
      v |= (uint32_t)(uint8_t)x[i + j] << (8 * j);
    }
    ek_extend_group(v, out);
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
        for (i = 0; i < in_c; i += 4, out += 4) {
          ek_extend_group(zp4, out);
        }
      } else {
        const int8_t *x = input + ((iy0 + ky * p->dil_h) * in_w + ix0 + kx * p->dil_w) * in_c;
        for (i = 0; i < in_c; i += 4, out += 4) {
          ek_extend_group(ek_load4(x + i), out);
        }
      }
    }
  }
}

/* Rows r and r + 1 of an interleaved block (w points at row r's first word) times two extended pixels:
 * a0 = (pixel 0, row r), a1 = (pixel 1, row r), a2 = (pixel 0, row r + 1), a3 = (pixel 1, row r + 1). */
static inline ek_acc4_t ek_dot2x2(const uint32_t *x, const int8_t *w, int32_t groups, ek_acc4_t acc) {
  const uint32_t *const end = x + 4 * groups;
#if defined(__GNUC__)
  w = (const int8_t *)__builtin_assume_aligned(w, 4);
#endif
  for (; x < end; x += 4, w += 16) {
    const uint32_t wa = ek_load4(w), wb = ek_load4(w + 4);
    const uint32_t ae = ek_sxtb16(wa), ao = ek_sxtb16_ror8(wa), be = ek_sxtb16(wb), bo = ek_sxtb16_ror8(wb);
    acc.a0 = ek_smlad(x[1], ao, ek_smlad(x[0], ae, acc.a0));
    acc.a1 = ek_smlad(x[3], ao, ek_smlad(x[2], ae, acc.a1));
    acc.a2 = ek_smlad(x[1], bo, ek_smlad(x[0], be, acc.a2));
    acc.a3 = ek_smlad(x[3], bo, ek_smlad(x[2], be, acc.a3));
  }
  return acc;
}

static inline ek_acc4_t ek_bias2x2(const int32_t *bias) {
  ek_acc4_t acc;
  acc.a0 = acc.a1 = bias[0];
  acc.a2 = acc.a3 = bias[1];
  return acc;
}

/* Two output pixels of a convolution from their extended inputs (groups of four): the weight blocks two rows
 * at a time, then the rows left over (plain rows, read a word at a time). */
static void ek_matvec2_s8(const uint32_t *extended, int32_t groups, const int8_t *weights, int32_t n_padded,
                          int32_t out_n, const int32_t *bias, const ek_requant_t *requant, int8_t *out0,
                          int8_t *out1) {
  const ek_requant_t local = *requant, *q = &local;
  const int32_t full = out_n & ~3;
  int32_t o, g;
  for (o = 0; o < full; o += 4) {
    const int8_t *w = weights + o * n_padded;
    const ek_acc4_t lo = ek_dot2x2(extended, w, groups, ek_bias2x2(bias + o));
    const ek_acc4_t hi = ek_dot2x2(extended, w + 8, groups, ek_bias2x2(bias + o + 2));
    ek_acc4_t p0, p1;
    p0.a0 = lo.a0;
    p0.a1 = lo.a2;
    p0.a2 = hi.a0;
    p0.a3 = hi.a2;
    p1.a0 = lo.a1;
    p1.a1 = lo.a3;
    p1.a2 = hi.a1;
    p1.a3 = hi.a3;
    ek_output4(q, o, p0, out0 + o);
    ek_output4(q, o, p1, out1 + o);
  }
  for (; o < out_n; o++) {
    const int8_t *w = weights + o * n_padded;
    int32_t a0 = bias[o], a1 = bias[o];
    for (g = 0; g < groups; g++) {
      const uint32_t wv = ek_load4(w + 4 * g), we = ek_sxtb16(wv), wo = ek_sxtb16_ror8(wv);
      const uint32_t *x = extended + 4 * g;
      a0 = ek_smlad(x[1], wo, ek_smlad(x[0], we, a0));
      a1 = ek_smlad(x[3], wo, ek_smlad(x[2], we, a1));
    }
    out0[o] = ek_requant_output(q, o, a0);
    out1[o] = ek_requant_output(q, o, a1);
  }
}
#endif

void ek_conv2d_s8(const ek_conv_params_t *p, const int8_t *input, int8_t *output, int8_t *scratch) {
  const int32_t out_c = p->out_c;
  const int32_t taps = p->k_h * p->k_w * p->in_c, n_padded = (taps + 3) & ~3;
  const ek_requant_t q = {p->mult, p->shift, 1, p->out_zp, p->act_min, p->act_max};
  const int32_t pixels = p->out_h * p->out_w;
  int8_t *col0 = scratch, *col1 = scratch + n_padded;
  int32_t pixel, i, n0;
  for (i = taps; i < n_padded; i++) {
    col0[i] = col1[i] = 0; /* the weights are zero there too */
  }
  for (pixel = 0; pixel < pixels; pixel++, output += out_c) { /* in raster order, pairs across row ends too */
    const int8_t *x0;
#if EK_SIMD
    if (pixel + 1 < pixels && out_c >= 4) { /* both windows are read before any output is written */
      uint32_t *extended = (uint32_t *)(void *)(scratch + (p->in_c % 4 == 0 ? 0 : 2 * n_padded));
      if (p->in_c % 4 == 0) { /* every tap is whole groups: extended straight from the input */
        ek_extend_window(p, input, pixel, extended);
        ek_extend_window(p, input, pixel + 1, extended + 2);
      } else { /* gathered first (two int8 columns in front of the extended buffer) */
        int32_t n1;
        const int8_t *x1;
        x0 = ek_conv_column(p, input, pixel, col0, &n0);
        x1 = ek_conv_column(p, input, pixel + 1, col1, &n1);
        ek_extend_column(x0, n0, extended);
        ek_extend_column(x1, n1, extended + 2);
      }
      ek_matvec2_s8(extended, n_padded / 4, p->weights, n_padded, out_c, p->bias, &q, output, output + out_c);
      pixel++;
      output += out_c;
      continue;
    }
#endif
    x0 = ek_conv_column(p, input, pixel, col0, &n0);
    ek_matvec_s8(x0, n0, p->weights, n_padded, out_c, p->bias, &q, output);
  }
}

#if EK_SIMD
/* Four channels (c..c+3) of one depthwise output pixel, depth multiplier 1: SMLABB/SMLATT keep channels apart. */
static inline ek_acc4_t ek_depthwise4(const int8_t *const *src, int32_t c, int32_t taps, const int8_t *w,
                                      int32_t channels, ek_acc4_t acc) {
  int32_t t;
#if defined(__GNUC__)
#pragma GCC unroll 3
#endif
  for (t = 0; t < taps; t++, w += channels) {
    const uint32_t xv = ek_load4(src[t] + c), wv = ek_load4(w);
    const uint32_t xe = ek_sxtb16(xv), we = ek_sxtb16(wv), xo = ek_sxtb16_ror8(xv), wo = ek_sxtb16_ror8(wv);
    acc.a0 = ek_smlabb(xe, we, acc.a0);
    acc.a2 = ek_smlatt(xe, we, acc.a2);
    acc.a1 = ek_smlabb(xo, wo, acc.a1);
    acc.a3 = ek_smlatt(xo, wo, acc.a3);
  }
  return acc;
}
#endif

void ek_depthwise_conv2d_s8(const ek_conv_params_t *p, const int8_t *input, int8_t *output, int8_t *scratch) {
  const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, out_c = p->out_c;
  const int32_t k_h = p->k_h, k_w = p->k_w, taps = k_h * k_w;
  const int32_t mult_c = p->depth_multiplier;
  /* scratch: in_c bytes of in_zp (what a tap outside the input reads), then one input pointer per tap */
  const int8_t **src = (const int8_t **)(void *)(scratch + ((in_c + 7) & ~7));
  const ek_requant_t q = {p->mult, p->shift, 1, p->out_zp, p->act_min, p->act_max};
  int32_t oy, ox, ky, kx, t, c;
  for (c = 0; c < in_c; c++) {
    scratch[c] = (int8_t)p->in_zp;
  }
  for (oy = 0; oy < p->out_h; oy++) {
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t ky0, ky1;
    ek_window_range(iy0, k_h, p->dil_h, in_h, &ky0, &ky1);
    for (ox = 0; ox < p->out_w; ox++) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      int32_t kx0, kx1;
      ek_window_range(ix0, k_w, p->dil_w, in_w, &kx0, &kx1);
      for (ky = 0, t = 0; ky < k_h; ky++) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (kx = 0; kx < k_w; kx++, t++) {
          const int32_t inside = ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1;
          src[t] = inside ? input + (iy * in_w + ix0 + kx * p->dil_w) * in_c : scratch;
        }
      }
      c = 0;
#if EK_SIMD
      if (mult_c == 1) {
        for (; c + 4 <= out_c; c += 4) {
          ek_acc4_t acc = ek_bias4(p->bias + c);
          if (taps == 9) { /* 3x3: a loop the compiler unrolls */
            acc = ek_depthwise4(src, c, 9, p->weights + c, out_c, acc);
          } else {
            acc = ek_depthwise4(src, c, taps, p->weights + c, out_c, acc);
          }
          ek_output4(&q, c, acc, output + c);
        }
      }
#endif
      for (; c < out_c; c++) {
        const int32_t ic = c / mult_c;
        const int8_t *w = p->weights + c;
        int32_t acc = p->bias[c];
        for (t = 0; t < taps; t++, w += out_c) {
          acc += (int32_t)*w * src[t][ic];
        }
        output[c] = ek_requant_output(&q, c, acc);
      }
      output += out_c;
    }
  }
}

void ek_fully_connected_s8(const ek_fc_params_t *p, const int8_t *input, int8_t *output) {
  const int32_t in_n = p->in_n, out_n = p->out_n;
  const ek_requant_t q = {p->mult, p->shift, p->per_channel, p->out_zp, p->act_min, p->act_max};
  int32_t b;
  for (b = 0; b < p->batches; b++) {
    ek_matvec_s8(input, in_n, p->weights, (in_n + 3) & ~3, out_n, p->bias, &q, output);
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

void ek_add_s8(const ek_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *output) {
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
