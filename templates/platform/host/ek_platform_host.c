/* ek_platform_host.c - the host platform: the device protocol over standard input and output.
 *
 * The generated model and the application compiled for this computer make a program that a host process (or a
 * person at a terminal) drives exactly like a board's serial port, so `edgekit profile` works the same here.
 * Ticks are nanoseconds of CLOCK_MONOTONIC; the stack high-water mark is not measured (0).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "edgekit_app.h"
#include "edgekit_platform.h"

static unsigned char in_buf[4096];
static size_t in_len;
static size_t in_pos;

void ek_platform_init(void) {}

int ek_platform_getc(void) {
  if (in_pos == in_len) {
    ssize_t n;
    do {
      n = read(STDIN_FILENO, in_buf, sizeof(in_buf));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      return -1;
    }
    in_len = (size_t)n;
    in_pos = 0;
  }
  return in_buf[in_pos++];
}

void ek_platform_write(const char *data, size_t n) {
  while (n > 0) {
    ssize_t written = write(STDOUT_FILENO, data, n);
    if (written < 0) {
      if (errno == EINTR) {
        continue;
      }
      return; /* the reader went away: nothing useful left to do */
    }
    data += written;
    n -= (size_t)written;
  }
}

uint64_t ek_platform_ticks(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

uint32_t ek_platform_ticks_per_second(void) { return 1000000000u; }

uint32_t ek_platform_stack_peak(void) { return 0; }

int main(void) { return ek_app_run(); }
