/* ek_elementwise.c - unary ops by table lookup and broadcasting binary ops (SUB, SQUARED_DIFFERENCE, MAXIMUM,
 * MINIMUM, PRELU), bit-exact with TFLite Micro's int8 kernels. Shipped only with models that use them.
 */
#include "ek_ops.h"

#include "ek_fixedpoint.h"

void ek_lut_s8(int32_t size, const int8_t *table, const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < size; i++) {
    output[i] = table[(int32_t)input[i] + 128];
  }
}

void ek_neg_f32(int32_t size, const float *input, float *output) {
  int32_t i;
  for (i = 0; i < size; i++) {
    output[i] = -input[i];
  }
}

static inline int8_t ek_binary_one(const ek_binary_ex_params_t *p, int32_t a, int32_t b) {
  int32_t out;
  switch (p->kind) {
    case EK_MAXIMUM:
      return (int8_t)(a > b ? a : b);
    case EK_MINIMUM:
      return (int8_t)(a < b ? a : b);
    case EK_PRELU: {
      const int32_t x = a + p->a_offset;
      if (x >= 0) {
        out = ek_fp_requantize(x, p->a_mult, p->a_shift);
      } else {
        out = ek_fp_requantize(x * (b + p->b_offset), p->b_mult, p->b_shift);
      }
      return (int8_t)ek_fp_clamp(out + p->out_zp, p->act_min, p->act_max);
    }
    default: { /* SUB and SQUARED_DIFFERENCE: both inputs on a common scale first, as ADD does */
      const int32_t sa = ek_fp_requantize((a + p->a_offset) * (1 << p->left_shift), p->a_mult, p->a_shift);
      const int32_t sb = ek_fp_requantize((b + p->b_offset) * (1 << p->left_shift), p->b_mult, p->b_shift);
      const int32_t diff = sa - sb;
      out = ek_fp_requantize(p->kind == EK_SUB ? diff : diff * diff, p->out_mult, p->out_shift) + p->out_zp;
      return (int8_t)ek_fp_clamp(out, p->act_min, p->act_max);
    }
  }
}

void ek_binary_ex_s8(const ek_binary_ex_params_t *p, const int8_t *a, const int8_t *b, int8_t *output) {
  int32_t index[EK_MAX_DIMS] = {0};
  const int32_t last = p->rank - 1;
  int32_t ia = 0, ib = 0;
  for (;;) {
    int32_t i, d;
    for (i = 0; i < p->dims[last]; i++) {
      *output++ = ek_binary_one(p, a[ia + i * p->a_strides[last]], b[ib + i * p->b_strides[last]]);
    }
    /* next index of the outer dimensions (an odometer) */
    for (d = last - 1; d >= 0; d--) {
      index[d]++;
      ia += p->a_strides[d];
      ib += p->b_strides[d];
      if (index[d] < p->dims[d]) {
        break;
      }
      ia -= index[d] * p->a_strides[d];
      ib -= index[d] * p->b_strides[d];
      index[d] = 0;
    }
    if (d < 0) {
      return;
    }
  }
}
