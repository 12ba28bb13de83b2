/* test_main.c - a host harness for a generated native model: input bytes on stdin, output bytes on stdout.
 *
 * Reads ek_model_info()->input_bytes at a time until end of input, runs one inference per sample and writes
 * output_bytes per sample, so one process serves a whole batch of test samples.
 * With an argument N it instead times N inferences of the first sample and prints the mean in microseconds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "edgekit_backend.h"
#include "edgekit_platform.h"

uint64_t ek_platform_ticks(void) { return (uint64_t)clock(); }

int main(int argc, char **argv) {
  const ek_model_info_t *info = ek_model_info();
  if (ek_model_init() != 0) {
    return 2;
  }
  if (argc > 1) {
    const long runs = atol(argv[1]);
    long i;
    clock_t start;
    if (runs <= 0 || fread(ek_model_input(), 1, info->input_bytes, stdin) != info->input_bytes) {
      return 1;
    }
    start = clock();
    for (i = 0; i < runs; i++) {
      ek_model_invoke();
    }
    printf("%.3f\n", (double)(clock() - start) * 1e6 / CLOCKS_PER_SEC / (double)runs);
    return 0;
  }
  for (;;) {
    if (fread(ek_model_input(), 1, info->input_bytes, stdin) != info->input_bytes) {
      break;
    }
    if (ek_model_invoke() != 0) {
      return 3;
    }
    if (fwrite(ek_model_output(), 1, info->output_bytes, stdout) != info->output_bytes) {
      return 4;
    }
  }
  return 0;
}
