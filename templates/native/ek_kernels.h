/* ek_kernels.h - the int8 kernel library of edgekit's native backend.
 *
 * Plain C99, no malloc, no libm. Every kernel computes exactly what TensorFlow Lite Micro's reference kernels
 * compute (same fixed-point arithmetic, same rounding), so a generated model gives the same int8 outputs as the
 * interpreter, bit for bit. Shapes and quantization parameters arrive in const structs that the generator
 * places in flash; per-channel multipliers and shifts are precomputed at generation time.
 *
 * Kernels write their output in raster order, one element at a time, after reading what that element needs.
 * The memory planner relies on this to let an output overlap an input that dies at the same operator (see
 * edgekit/codegen/native_plan.py): never reorder the writes of a kernel without updating that analysis.
 */
#ifndef EK_KERNELS_H
#define EK_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Weight matrices of CONV_2D (rows = output channels, columns = [k_h][k_w][in_c] taps) and FULLY_CONNECTED
 * (rows = outputs, columns = inputs): int16, each row zero-padded to a multiple of 4 columns; rows in pairs, per
 * group of four columns row a's (w0, w2, w1, w3) then row b's, the order SXTB16 / SXTB16 ROR #8 give four int8
 * inputs in; a last odd row is plain (w0, w2, w1, w3) groups. DEPTHWISE_CONV_2D with depth multiplier 1 and
 * channels a multiple of 4: int16, per block of four channels c..c+3 and per tap (w_c, w_c+2, w_c+1, w_c+3); other
 * depthwise layers: int16 in TFLite's [k_h][k_w][out_c] order.
 * Every weight and bias of an output channel is multiplied by 2^(1 + left shift) (its requantization's; usually
 * 2), so accumulators hold that multiple of TFLite's: the kernels then only shift right (see ek_kernels.c).
 * bias[] holds that multiple of bias - in_zp * sum(weights of that output): a tap outside the input reads in_zp
 * and so adds nothing, which is exactly TFLite Micro's sum of weight * (input - in_zp) over the taps inside.
 * rq[] holds four words per output channel: {mult, 2^(e-1), e, -1} with e = -shift >= 1, {mult, 0, 0, 0} for a
 * shift of 0 or more; the generator makes sure accumulators stay under 2^31.
 *
 * CONV_2D and DEPTHWISE_CONV_2D take a scratch buffer (a part of the arena the generator reserves): conv
 * needs 4 * n_padded bytes (two windows as int16), 6 * n_padded when in_c is not a multiple of 4, depthwise
 * (in_c rounded up to 8) + 8 * k_h * k_w bytes, 8-aligned. */
typedef struct {
  int32_t in_h, in_w, in_c;
  int32_t out_h, out_w, out_c;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w;
  int32_t dil_h, dil_w;
  int32_t pad_top, pad_left;
  int32_t depth_multiplier; /* depthwise only */
  int32_t in_zp, out_zp;
  int32_t act_min, act_max;
  const int16_t *weights;
  const int32_t *bias;     /* scaled, zero point folded in */
  const int32_t *rq;       /* per output channel */
} ek_conv_params_t;

void ek_conv2d_s8(const ek_conv_params_t *p, const int8_t *input, int8_t *output, int8_t *scratch);
void ek_depthwise_conv2d_s8(const ek_conv_params_t *p, const int8_t *input, int8_t *output, int8_t *scratch);

/* FULLY_CONNECTED: weights in pairs as above; bias[] scaled, in_zp folded in; rq[] as above. */
typedef struct {
  int32_t batches, in_n, out_n;
  int32_t out_zp;
  int32_t act_min, act_max;
  int32_t per_channel; /* 0: rq[0..3] serve every output */
  const int16_t *weights;
  const int32_t *bias;
  const int32_t *rq;
} ek_fc_params_t;

void ek_fully_connected_s8(const ek_fc_params_t *p, const int8_t *input, int8_t *output);

/* AVERAGE_POOL_2D and MAX_POOL_2D (input and output share their quantization). */
typedef struct {
  int32_t in_h, in_w, channels;
  int32_t out_h, out_w;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w;
  int32_t pad_top, pad_left;
  int32_t act_min, act_max;
} ek_pool_params_t;

void ek_avg_pool_s8(const ek_pool_params_t *p, const int8_t *input, int8_t *output);
void ek_max_pool_s8(const ek_pool_params_t *p, const int8_t *input, int8_t *output);

/* ADD and MUL, with numpy-style broadcasting over up to 4 dimensions: a stride of 0 repeats an element. */
typedef struct {
  int32_t dims[4];       /* output shape, outermost first */
  int32_t a_strides[4];  /* element strides of input a for each output dimension */
  int32_t b_strides[4];
  int32_t a_offset, b_offset, out_zp; /* offsets are minus the input zero points */
  int32_t a_mult, a_shift, b_mult, b_shift; /* ADD only: inputs rescaled to a common scale */
  int32_t left_shift;                       /* ADD only: 20 */
  int32_t out_mult, out_shift;
  int32_t act_min, act_max;
  int32_t broadcast;     /* 0: same shapes, a flat loop */
} ek_binary_params_t;

void ek_add_s8(const ek_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *output);
void ek_mul_s8(const ek_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *output);

/* SOFTMAX over the last dimension (TFLite's gemmlowp fixed-point exp and reciprocal). */
typedef struct {
  int32_t rows, depth;
  int32_t input_mult, input_left_shift;
  int32_t diff_min;
} ek_softmax_params_t;

void ek_softmax_s8(const ek_softmax_params_t *p, const int8_t *input, int8_t *output);

/* LOGISTIC and TANH (gemmlowp fixed point, 4 integer bits in). */
typedef struct {
  int32_t size;
  int32_t in_zp;
  int32_t range_radius;
  int32_t mult, left_shift;
} ek_activation_params_t;

void ek_logistic_s8(const ek_activation_params_t *p, const int8_t *input, int8_t *output);
void ek_tanh_s8(const ek_activation_params_t *p, const int8_t *input, int8_t *output);

/* QUANTIZE (float -> int8, int8 -> int8) and DEQUANTIZE (int8 -> float). */
void ek_quantize_f32_s8(int32_t size, float scale, int32_t zp, const float *input, int8_t *output);
void ek_requantize_s8(int32_t size, int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp,
                      const int8_t *input, int8_t *output);
void ek_dequantize_s8_f32(int32_t size, float scale, int32_t zp, const int8_t *input, float *output);

/* MEAN over a contiguous run of axes: input [outer][reduce][inner] -> output [outer][inner], TFLite's
 * QuantizedMeanOrSum (the sum minus the zero points, requantized with 1/reduce folded into the multiplier). */
typedef struct {
  int32_t outer, reduce, inner;
  int32_t in_zp, out_zp;
  int32_t mult, shift; /* 1/reduce already folded in */
} ek_mean_params_t;

void ek_mean_s8(const ek_mean_params_t *p, const int8_t *input, int8_t *output);

/* PAD (and PADV2) over 4 dimensions. */
typedef struct {
  int32_t in_dims[4];
  int32_t out_dims[4];
  int32_t before[4];
  int32_t value;
} ek_pad_params_t;

void ek_pad_s8(const ek_pad_params_t *p, const int8_t *input, int8_t *output);

/* CONCATENATION: copy `rows` blocks of `block` bytes, reading them contiguously, writing every `out_stride`. */
void ek_copy_blocks(int32_t rows, int32_t block, int32_t out_stride, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* EK_KERNELS_H */
