/* ek_ops.h - the native backend's kernels beyond ek_kernels.h: table-driven unary ops, broadcasting binary ops,
 * data movement, reductions, matrix products and transposed convolutions. Each is bit-exact with TFLite
 * Micro's int8 kernel of the same op; the generator ships a kernel file only when the model uses it.
 *
 * As in ek_kernels.h, every parameter is computed at generation time; kernels only run integer arithmetic.
 * These kernels never run in place: the memory plan gives their outputs bytes of their own (except the
 * table lookup, which reads element i before writing it).
 */
#ifndef EK_OPS_H
#define EK_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EK_MAX_DIMS 8

/* ek_elementwise.c ----------------------------------------------------------------------------------------- */

/* A unary int8 op as a 256-entry table built at generation time with TFLite Micro's integer arithmetic
 * (LEAKY_RELU, HARD_SWISH, RELU, RELU6, RSQRT): output[i] = table[input[i] + 128]. */
void ek_lut_s8(int32_t size, const int8_t *table, const int8_t *input, int8_t *output);

/* NEG on float32: the float island TFLite Micro runs between a DEQUANTIZE and a QUANTIZE (it has no int8 NEG). */
void ek_neg_f32(int32_t size, const float *input, float *output);

enum { EK_SUB = 0, EK_SQUARED_DIFFERENCE = 1, EK_MAXIMUM = 2, EK_MINIMUM = 3, EK_PRELU = 4 };

/* Binary ops with numpy broadcasting over up to EK_MAX_DIMS dimensions (stride 0 repeats an element). */
typedef struct {
  int32_t kind;  /* EK_SUB ... */
  int32_t rank;
  int32_t dims[EK_MAX_DIMS];  /* output shape, outermost first */
  int32_t a_strides[EK_MAX_DIMS];
  int32_t b_strides[EK_MAX_DIMS];
  int32_t a_offset, b_offset, out_zp; /* offsets are minus the input zero points */
  int32_t left_shift;
  int32_t a_mult, a_shift, b_mult, b_shift; /* PRELU: identity (a) and alpha (b) multipliers */
  int32_t out_mult, out_shift;
  int32_t act_min, act_max;
} ek_binary_ex_params_t;

void ek_binary_ex_s8(const ek_binary_ex_params_t *p, const int8_t *a, const int8_t *b, int8_t *output);

/* ek_shape.c ----------------------------------------------------------------------------------------------- */

/* Copy a strided view: for every index (i0..i{rank-1}) of dims, in raster order,
 * output[out_offset + sum(i_k * out_strides[k])] = input[in_offset + sum(i_k * in_strides[k])].
 * TRANSPOSE, SLICE, STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK, PACK, DEPTH_TO_SPACE and SPACE_TO_DEPTH are all one
 * such copy per output (or per input, for PACK); none requantizes, as in TFLite Micro. */
typedef struct {
  int32_t rank;
  int32_t dims[EK_MAX_DIMS];
  int32_t in_strides[EK_MAX_DIMS];
  int32_t out_strides[EK_MAX_DIMS];
  int32_t in_offset, out_offset;
} ek_copy_params_t;

void ek_copy_nd(const ek_copy_params_t *p, const int8_t *input, int8_t *output);

/* GATHER with constant indices: input [outer][axis][block] -> output [outer][count][block]. */
typedef struct {
  int32_t outer, axis, block, count;
  const int32_t *indices;
} ek_gather_params_t;

void ek_gather_s8(const ek_gather_params_t *p, const int8_t *input, int8_t *output);

/* RESIZE_NEAREST_NEIGHBOR: the source row and column of every output row and column, computed at generation
 * time with TFLite Micro's float formula. */
typedef struct {
  int32_t batches, in_h, in_w, out_h, out_w, channels;
  const int32_t *rows, *cols;
} ek_resize_nearest_params_t;

void ek_resize_nearest_s8(const ek_resize_nearest_params_t *p, const int8_t *input, int8_t *output);

/* RESIZE_BILINEAR (TFLite's integer path, 10 fractional bits per axis): for every output row y, the two
 * source rows y0[y], y1[y] and the position in 1/1024 (pos[y], pos - 1024 * y0 is the weight of y1); same for
 * the columns. */
typedef struct {
  int32_t batches, in_h, in_w, out_h, out_w, channels;
  const int32_t *y0, *y1, *y_pos;
  const int32_t *x0, *x1, *x_pos;
} ek_resize_bilinear_params_t;

void ek_resize_bilinear_s8(const ek_resize_bilinear_params_t *p, const int8_t *input, int8_t *output);

/* ek_reduce.c ---------------------------------------------------------------------------------------------- */

enum { EK_REDUCE_SUM = 0, EK_REDUCE_MAX = 1, EK_REDUCE_MIN = 2 };

/* MEAN, SUM, REDUCE_MAX and REDUCE_MIN over any set of axes: the kept axes (outermost first) enumerate the
 * output in raster order, the reduced axes the elements summed into each output. MEAN is a SUM whose multiplier
 * has 1/count folded in (TFLite's QuantizedMeanOrSum); MAX and MIN compare raw values (same quantization in and
 * out, which TFLite Micro requires). */
typedef struct {
  int32_t kind;
  int32_t kept_rank, reduced_rank;
  int32_t kept_dims[EK_MAX_DIMS], kept_strides[EK_MAX_DIMS];
  int32_t reduced_dims[EK_MAX_DIMS], reduced_strides[EK_MAX_DIMS];
  int32_t count;  /* elements reduced into each output */
  int32_t in_zp, out_zp;
  int32_t mult, shift;
} ek_reduce_params_t;

void ek_reduce_s8(const ek_reduce_params_t *p, const int8_t *input, int8_t *output);

/* ek_matmul.c ---------------------------------------------------------------------------------------------- */

/* BATCH_MATMUL: output[b][i][j] = requantize(sum_k (lhs[b][i][k] - lhs_zp) * (rhs[b][k][j] - rhs_zp)), the
 * batch dimensions broadcast (stride 0); adjoint flags are folded into the element strides. */
typedef struct {
  int32_t batch_rank;
  int32_t batch_dims[EK_MAX_DIMS];
  int32_t lhs_batch_strides[EK_MAX_DIMS], rhs_batch_strides[EK_MAX_DIMS];
  int32_t rows, cols, depth;
  int32_t lhs_row_stride, lhs_depth_stride, rhs_depth_stride, rhs_col_stride;
  int32_t lhs_offset, rhs_offset, out_zp;
  int32_t mult, shift;
  int32_t act_min, act_max;
} ek_batch_matmul_params_t;

void ek_batch_matmul_s8(const ek_batch_matmul_params_t *p, const int8_t *lhs, const int8_t *rhs,
                        int8_t *output);

/* TRANSPOSE_CONV (NHWC, per-channel requantization): each output sums (input + in_offset) * weight over the
 * input pixels whose window covers it, the sum TFLite Micro scatters. The weights are TFLite's
 * [out_c][k_h][k_w][in_c] reordered at generation time to [k_h][k_w][in_c][out_c], so the inner loop runs over
 * contiguous output channels. */
typedef struct {
  int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t k_h, k_w, stride_h, stride_w, pad_top, pad_left;
  int32_t in_offset, out_zp;
  int32_t act_min, act_max;
  const int8_t *weights;
  const int32_t *bias; /* may be NULL */
  const int32_t *mult;
  const int8_t *shift;
} ek_transpose_conv_params_t;

void ek_transpose_conv_s8(const ek_transpose_conv_params_t *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* EK_OPS_H */
