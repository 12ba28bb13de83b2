/* ek_shape.c - data movement (strided views, gathers, nearest and bilinear resizing), bit-exact with TFLite
 * Micro's int8 kernels: none of them requantizes except RESIZE_BILINEAR, which interpolates in integers.
 */
#include "ek_ops.h"

void ek_copy_nd(const ek_copy_params_t *p, const int8_t *input, int8_t *output) {
  int32_t index[EK_MAX_DIMS] = {0};
  const int32_t last = p->rank - 1;
  const int32_t n = p->dims[last], si = p->in_strides[last], so = p->out_strides[last];
  int32_t ii = p->in_offset, io = p->out_offset;
  for (;;) {
    int32_t i, d;
    const int8_t *src = input + ii;
    int8_t *dst = output + io;
    if (si == 1 && so == 1) {
      for (i = 0; i < n; i++) {
        dst[i] = src[i];
      }
    } else {
      for (i = 0; i < n; i++) {
        dst[i * so] = src[i * si];
      }
    }
    for (d = last - 1; d >= 0; d--) {
      index[d]++;
      ii += p->in_strides[d];
      io += p->out_strides[d];
      if (index[d] < p->dims[d]) {
        break;
      }
      ii -= index[d] * p->in_strides[d];
      io -= index[d] * p->out_strides[d];
      index[d] = 0;
    }
    if (d < 0) {
      return;
    }
  }
}

void ek_gather_s8(const ek_gather_params_t *p, const int8_t *input, int8_t *output) {
  int32_t o, k, i;
  for (o = 0; o < p->outer; o++) {
    for (k = 0; k < p->count; k++) {
      const int8_t *src = input + ((int32_t)o * p->axis + p->indices[k]) * p->block;
      for (i = 0; i < p->block; i++) {
        *output++ = src[i];
      }
    }
  }
}

void ek_resize_nearest_s8(const ek_resize_nearest_params_t *p, const int8_t *input, int8_t *output) {
  const int32_t c = p->channels;
  int32_t b, y, x, i;
  for (b = 0; b < p->batches; b++) {
    const int8_t *image = input + b * p->in_h * p->in_w * c;
    for (y = 0; y < p->out_h; y++) {
      const int8_t *row = image + p->rows[y] * p->in_w * c;
      for (x = 0; x < p->out_w; x++) {
        const int8_t *src = row + p->cols[x] * c;
        for (i = 0; i < c; i++) {
          *output++ = src[i];
        }
      }
    }
  }
}

void ek_resize_bilinear_s8(const ek_resize_bilinear_params_t *p, const int8_t *input, int8_t *output) {
  const int32_t c = p->channels;
  const int32_t row = p->in_w * c;
  int32_t b, y, x, i;
  for (b = 0; b < p->batches; b++) {
    const int8_t *image = input + b * p->in_h * row;
    for (y = 0; y < p->out_h; y++) {
      const int64_t wy1 = p->y_pos[y] - 1024 * p->y0[y];
      const int64_t wy0 = 1024 - wy1;
      const int8_t *r0 = image + p->y0[y] * row;
      const int8_t *r1 = image + p->y1[y] * row;
      for (x = 0; x < p->out_w; x++) {
        const int64_t wx1 = p->x_pos[x] - 1024 * p->x0[x];
        const int64_t wx0 = 1024 - wx1;
        const int32_t c0 = p->x0[x] * c, c1 = p->x1[x] * c;
        for (i = 0; i < c; i++) {
          const int64_t sum = r0[c0 + i] * wy0 * wx0 + r1[c0 + i] * wy1 * wx0 + r0[c1 + i] * wy0 * wx1 +
                              r1[c1 + i] * wy1 * wx1;
          const int64_t round = sum > 0 ? (1 << 19) : -(1 << 19);
          *output++ = (int8_t)((sum + round) / (1 << 20));
        }
      }
    }
  }
}
