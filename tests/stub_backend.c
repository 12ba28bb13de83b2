/* stub_backend.c - a tiny hand-written backend for testing the application and the platforms without a model.
 *
 * Input: 12 int8 values. Output: 4 int8 values, output[j] = (int8) sum of input[3j .. 3j+2] (wrapping).
 * Two "layers" so that per-layer ticks can be checked: a sum and a copy, each doing a fixed amount of work.
 * STUB_ARENA_BYTES sets a static arena (tests use it to overflow a board's RAM).
 */
#include "edgekit_backend.h"
#include "edgekit_platform.h"

#ifndef STUB_ARENA_BYTES
#define STUB_ARENA_BYTES 256
#endif

static int8_t arena[STUB_ARENA_BYTES];
static int8_t input[12];
static int8_t output[4];
static uint64_t layer_ticks[2];

static const ek_model_info_t info = {
    "stub", "native", EK_TYPE_INT8, EK_TYPE_INT8, 12, 4, 12, 4, 0.5f, -1, 0.25f, 3,
    STUB_ARENA_BYTES, 2,
};

const ek_model_info_t *ek_model_info(void) { return &info; }

int ek_model_init(void) {
  arena[0] = 1;
  return 0;
}

void *ek_model_input(void) { return input; }

const void *ek_model_output(void) { return output; }

int ek_model_invoke(void) {
  volatile int8_t *scratch = arena;
  uint64_t t0 = ek_platform_ticks();
  int j;
  int k;
  for (j = 0; j < 4; j++) {
    int32_t sum = 0;
    for (k = 0; k < 3; k++) {
      sum += input[3 * j + k];
    }
    scratch[j] = (int8_t)(uint8_t)(sum & 0xff);
  }
  for (k = 0; k < 2000; k++) { /* a fixed amount of work, so the emulated tick counts are visibly > 0 */
    scratch[4 + k % 16] = (int8_t)(scratch[4 + (k + 1) % 16] + 1);
  }
  uint64_t t1 = ek_platform_ticks();
  for (j = 0; j < 4; j++) {
    output[j] = scratch[j];
  }
  uint64_t t2 = ek_platform_ticks();
  layer_ticks[0] = t1 - t0;
  layer_ticks[1] = t2 - t1;
  return 0;
}

uint32_t ek_model_arena_used(void) { return 20; }

const char *ek_model_layer_name(uint16_t layer) { return layer == 0 ? "SUM" : "COPY"; }

uint64_t ek_model_layer_ticks(uint16_t layer) { return layer < 2 ? layer_ticks[layer] : 0; }
