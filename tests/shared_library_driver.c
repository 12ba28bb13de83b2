/* shared_library_driver.c - links libedgekit_model.so through its plain C API (app/edgekit_backend.h) only:
 * reads one input from stdin, runs the model once, writes the raw output to stdout. */
#include <stdio.h>

#include "edgekit_backend.h"

int main(void) {
  const ek_model_info_t *info = ek_model_info();
  if (ek_model_init() != 0) {
    return 1;
  }
  if (fread(ek_model_input(), 1, info->input_bytes, stdin) != info->input_bytes) {
    return 2;
  }
  if (ek_model_invoke() != 0) {
    return 3;
  }
  fwrite(ek_model_output(), 1, info->output_bytes, stdout);
  return 0;
}
