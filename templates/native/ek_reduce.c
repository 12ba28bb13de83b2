/* ek_reduce.c - MEAN, SUM, REDUCE_MAX and REDUCE_MIN over any axes, bit-exact with TFLite Micro's int8 kernels
 * (QuantizedMeanOrSum for the sums: int32 sum, minus count x zero point, one requantization).
 */
#include "ek_ops.h"

#include "ek_fixedpoint.h"

/* The element offset of the next index of an odometer over (dims, strides); returns 0 when it wrapped around. */
static inline int ek_next(int32_t rank, const int32_t *dims, const int32_t *strides, int32_t *index,
                          int32_t *offset) {
  int32_t d;
  for (d = rank - 1; d >= 0; d--) {
    index[d]++;
    *offset += strides[d];
    if (index[d] < dims[d]) {
      return 1;
    }
    *offset -= index[d] * strides[d];
    index[d] = 0;
  }
  return 0;
}

void ek_reduce_s8(const ek_reduce_params_t *p, const int8_t *input, int8_t *output) {
  int32_t kept[EK_MAX_DIMS] = {0};
  int32_t base = 0;
  do {
    int32_t reduced[EK_MAX_DIMS] = {0};
    int32_t at = 0;
    int32_t acc = p->kind == EK_REDUCE_SUM ? 0 : (p->kind == EK_REDUCE_MAX ? -128 : 127);
    do {
      const int32_t v = input[base + at];
      if (p->kind == EK_REDUCE_SUM) {
        acc += v;
      } else if (p->kind == EK_REDUCE_MAX) {
        acc = v > acc ? v : acc;
      } else {
        acc = v < acc ? v : acc;
      }
    } while (ek_next(p->reduced_rank, p->reduced_dims, p->reduced_strides, reduced, &at));
    if (p->kind == EK_REDUCE_SUM) {
      acc = ek_fp_requantize(acc - p->in_zp * p->count, p->mult, p->shift) + p->out_zp;
      acc = ek_fp_clamp(acc, -128, 127);
    }
    *output++ = (int8_t)acc;
  } while (ek_next(p->kept_rank, p->kept_dims, p->kept_strides, kept, &base));
}
