/* ek_fixedpoint.h - the fixed-point primitives TFLite Micro's integer kernels are written with (gemmlowp's
 * semantics), as static inline functions for the kernel files beside ek_kernels.c (ek_elementwise.c, ek_shape.c,
 * ek_reduce.c, ek_matmul.c). Private to the kernels: a generated model.c never includes it.
 */
#ifndef EK_FIXEDPOINT_H
#define EK_FIXEDPOINT_H

#include <stdint.h>

#define EK_FP_INT32_MIN (-2147483647 - 1)
#define EK_FP_INT32_MAX 2147483647

static inline int32_t ek_fp_clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* round(a * b / 2^31), half away from zero, saturating the single overflow case. */
static inline int32_t ek_fp_srdhm(int32_t a, int32_t b) {
  int64_t ab;
  int64_t nudge;
  if (a == b && a == EK_FP_INT32_MIN) {
    return EK_FP_INT32_MAX;
  }
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent, half away from zero. */
static inline int32_t ek_fp_rdbpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)((1u << exponent) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite's MultiplyByQuantizedMultiplier: x * mult * 2^(shift - 31), rounded twice as TFLite Micro does. */
static inline int32_t ek_fp_requantize(int32_t x, int32_t mult, int32_t shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return ek_fp_rdbpot(ek_fp_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

#endif /* EK_FIXEDPOINT_H */
