/* edgekit_backend.h - what every inference backend provides to the application.
 *
 * Both backends implement it: the native backend (interpreter-free C generated from the model) and the TFLite
 * Micro backend (a thin C++ wrapper around tflite::MicroInterpreter). The application, which serves the device
 * protocol over the serial port, only ever calls these functions, so it is the same for every backend and board.
 */
#ifndef EDGEKIT_BACKEND_H
#define EDGEKIT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  EK_TYPE_INT8 = 0,
  EK_TYPE_UINT8 = 1,
  EK_TYPE_INT16 = 2,
  EK_TYPE_INT32 = 3,
  EK_TYPE_FLOAT32 = 4
} ek_type_t;

typedef struct {
  const char *model_name;   /* printable ASCII, no quotes */
  const char *backend;      /* "native" or "tflm" */
  ek_type_t input_type;
  ek_type_t output_type;
  uint32_t input_bytes;     /* size of the input tensor in bytes */
  uint32_t output_bytes;
  uint32_t input_elements;
  uint32_t output_elements;
  float input_scale;        /* quantization of input and output (0 when not quantized) */
  int32_t input_zero_point;
  float output_scale;
  int32_t output_zero_point;
  uint32_t arena_bytes;     /* arena reserved at build time */
  uint16_t num_layers;      /* operators that run in ek_model_invoke */
} ek_model_info_t;

const ek_model_info_t *ek_model_info(void);

/* Prepare the model (plan, allocate, bind tensors). Returns 0 on success. */
int ek_model_init(void);

/* Where the application writes one input and reads one output (ek_model_info()->*_bytes long).
 * The input stays intact across ek_model_invoke(): one uploaded input can be run many times. */
void *ek_model_input(void);
const void *ek_model_output(void);

/* Run one inference. Returns 0 on success. */
int ek_model_invoke(void);

/* Bytes of the arena actually in use after init (native: the static plan's peak). */
uint32_t ek_model_arena_used(void);

/* Per-layer profile of the last ek_model_invoke: the operator's name (e.g. "CONV_2D") and the time it took,
 * in ek_platform_ticks() units. Layers are numbered 0 .. num_layers-1 in execution order. */
const char *ek_model_layer_name(uint16_t layer);
uint64_t ek_model_layer_ticks(uint16_t layer);

/* Per-layer validation (ek-layer-out, `edgekit profile --validate-layers`): run layers 0 .. layer of one inference
 * on the current input and return where that layer's output tensor is, its size in *bytes; NULL when the backend
 * cannot (the application then answers with an error). Optional: the application carries a weak default that
 * returns NULL, so a backend without it still links (GCC and Clang). The native backend implements it from its
 * memory plan, which knows where every tensor lives. */
const void *ek_model_layer_output(uint16_t layer, uint32_t *bytes);

#ifdef __cplusplus
}
#endif

#endif /* EDGEKIT_BACKEND_H */
