/* ek_matmul.c - BATCH_MATMUL and TRANSPOSE_CONV, bit-exact with TFLite Micro's int8 kernels: int32
 * accumulators over (value - zero point) products, one requantization per output.
 */
#include "ek_ops.h"

#include "ek_fixedpoint.h"

void ek_batch_matmul_s8(const ek_batch_matmul_params_t *p, const int8_t *lhs, const int8_t *rhs,
                        int8_t *output) {
  int32_t index[EK_MAX_DIMS] = {0};
  int32_t lo = 0, ro = 0;
  for (;;) {
    int32_t i, j, k, d;
    for (i = 0; i < p->rows; i++) {
      const int8_t *row = lhs + lo + i * p->lhs_row_stride;
      for (j = 0; j < p->cols; j++) {
        const int8_t *col = rhs + ro + j * p->rhs_col_stride;
        int32_t acc = 0, out;
        for (k = 0; k < p->depth; k++) {
          acc += (row[k * p->lhs_depth_stride] + p->lhs_offset) * (col[k * p->rhs_depth_stride] + p->rhs_offset);
        }
        out = ek_fp_requantize(acc, p->mult, p->shift) + p->out_zp;
        *output++ = (int8_t)ek_fp_clamp(out, p->act_min, p->act_max);
      }
    }
    for (d = p->batch_rank - 1; d >= 0; d--) {
      index[d]++;
      lo += p->lhs_batch_strides[d];
      ro += p->rhs_batch_strides[d];
      if (index[d] < p->batch_dims[d]) {
        break;
      }
      lo -= index[d] * p->lhs_batch_strides[d];
      ro -= index[d] * p->rhs_batch_strides[d];
      index[d] = 0;
    }
    if (d < 0) {
      return;
    }
  }
}

/* Output channels accumulated together (int32 accumulators on the stack). */
#define EK_TRANSPOSE_CONV_BLOCK 32

/* The input positions i with i * stride - pad + k = o for some tap k in [0, kernel): first i and count. */
static inline void ek_sources(int32_t o, int32_t stride, int32_t pad, int32_t kernel, int32_t size, int32_t *first,
                              int32_t *last) {
  const int32_t t = o + pad; /* i * stride + k = t */
  int32_t lo = t - kernel + 1;
  lo = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  *first = lo;
  *last = t < 0 ? -1 : t / stride;
  if (*last > size - 1) {
    *last = size - 1;
  }
}

void ek_transpose_conv_s8(const ek_transpose_conv_params_t *p, const int8_t *input, int8_t *output) {
  int32_t acc[EK_TRANSPOSE_CONV_BLOCK];
  int32_t b, oy, ox, oc0, iy, ix, ic, j;
  for (b = 0; b < p->batches; b++) {
    const int8_t *image = input + b * p->in_h * p->in_w * p->in_c;
    for (oy = 0; oy < p->out_h; oy++) {
      int32_t y_first, y_last;
      ek_sources(oy, p->stride_h, p->pad_top, p->k_h, p->in_h, &y_first, &y_last);
      for (ox = 0; ox < p->out_w; ox++) {
        int32_t x_first, x_last;
        ek_sources(ox, p->stride_w, p->pad_left, p->k_w, p->in_w, &x_first, &x_last);
        for (oc0 = 0; oc0 < p->out_c; oc0 += EK_TRANSPOSE_CONV_BLOCK) {
          const int32_t n = p->out_c - oc0 < EK_TRANSPOSE_CONV_BLOCK ? p->out_c - oc0 : EK_TRANSPOSE_CONV_BLOCK;
          for (j = 0; j < n; j++) {
            acc[j] = 0;
          }
          for (iy = y_first; iy <= y_last; iy++) {
            const int32_t ky = oy + p->pad_top - iy * p->stride_h;
            for (ix = x_first; ix <= x_last; ix++) {
              const int32_t kx = ox + p->pad_left - ix * p->stride_w;
              const int8_t *x = image + (iy * p->in_w + ix) * p->in_c;
              const int8_t *w = p->weights + (ky * p->k_w + kx) * p->in_c * p->out_c + oc0;
              for (ic = 0; ic < p->in_c; ic++) {
                const int32_t v = x[ic] + p->in_offset;
                const int8_t *row = w + ic * p->out_c;
                for (j = 0; j < n; j++) {
                  acc[j] += v * row[j];
                }
              }
            }
          }
          for (j = 0; j < n; j++) {
            const int32_t oc = oc0 + j;
            int32_t out = acc[j] + (p->bias ? p->bias[oc] : 0);
            out = ek_fp_requantize(out, p->mult[oc], p->shift[oc]) + p->out_zp;
            *output++ = (int8_t)ek_fp_clamp(out, p->act_min, p->act_max);
          }
        }
      }
    }
  }
}
