/* edgekit_app.c - the device protocol server (docs/protocol.md), the same on every board and backend.
 *
 * Commands arrive as ASCII terminated by '%'; every answer ends with exactly one "m-ready" line. Numbers are
 * formatted here, not with printf: newlib-nano's printf has no 64-bit integers and costs kilobytes of flash and
 * heap, and the host's printf is not needed either. Timed runs contain nothing but ek_model_invoke() calls, so
 * the tick counts are those of the model alone.
 */
#include <string.h>

#include "edgekit_app.h"
#include "edgekit_backend.h"
#include "edgekit_platform.h"

#ifndef EK_VERSION
#define EK_VERSION "dev"
#endif

#define EK_ECHO_MAX 32 /* characters of an unknown command echoed back */

/* ------------------------------------------------------------------------------------------------------------
 * Output: lines are assembled in a small buffer and written in pieces, so long lines (ek-out) need no big buffer.
 */
static char out_buf[128];
static size_t out_len;

static void out_flush(void) {
  if (out_len > 0) {
    ek_platform_write(out_buf, out_len);
    out_len = 0;
  }
}

static void out_char(char c) {
  if (out_len == sizeof(out_buf)) {
    out_flush();
  }
  out_buf[out_len++] = c;
}

static void out_str(const char *s) {
  while (*s != '\0') {
    out_char(*s++);
  }
}

/* Text from elsewhere (a layer name, an echoed command): printable ASCII only, at most max characters. */
static void out_text(const char *s, size_t max) {
  size_t i;
  for (i = 0; i < max && s[i] != '\0'; i++) {
    char c = s[i];
    out_char((c >= ' ' && c <= '~') ? c : '?');
  }
}

static void out_u64(uint64_t v) {
  char digits[20];
  int n = 0;
  do {
    digits[n++] = (char)('0' + (int)(v % 10u));
    v /= 10u;
  } while (v != 0u);
  while (n > 0) {
    out_char(digits[--n]);
  }
}

static void out_i64(int64_t v) {
  if (v < 0) {
    out_char('-');
    out_u64((uint64_t)0 - (uint64_t)v);
  } else {
    out_u64((uint64_t)v);
  }
}

static void out_hex_byte(uint8_t b) {
  static const char hex[] = "0123456789abcdef";
  out_char(hex[b >> 4]);
  out_char(hex[b & 0x0fu]);
}

/* A float as fixed point with six decimals, or d.dddddde+XX when that would lose it (tiny or huge values). */
static void out_f32(float f) {
  double v = (double)f;
  int exponent = 0;
  uint64_t scaled;
  if (v != v) {
    out_str("nan");
    return;
  }
  if (v < 0.0) {
    out_char('-');
    v = -v;
  }
  if (v > 3.5e38) {
    out_str("inf");
    return;
  }
  if (v != 0.0 && (v < 1e-4 || v >= 1e9)) {
    while (v >= 10.0) {
      v /= 10.0;
      exponent++;
    }
    while (v < 1.0) {
      v *= 10.0;
      exponent--;
    }
  }
  scaled = (uint64_t)(v * 1e6 + 0.5);
  out_u64(scaled / 1000000u);
  out_char('.');
  {
    uint32_t frac = (uint32_t)(scaled % 1000000u);
    uint32_t div;
    for (div = 100000u; div > 0u; div /= 10u) {
      out_char((char)('0' + (frac / div) % 10u));
    }
  }
  if (exponent != 0) {
    out_char('e');
    out_char(exponent < 0 ? '-' : '+');
    if (exponent < 0) {
      exponent = -exponent;
    }
    if (exponent < 10) {
      out_char('0');
    }
    out_u64((uint64_t)exponent);
  }
}

static void out_end(void) {
  out_str("\r\n");
  out_flush();
}

static void out_line(const char *s) {
  out_str(s);
  out_end();
}

static void out_error(const char *what) {
  out_str("e-[");
  out_str(what);
  out_str("]");
  out_end();
}

/* ------------------------------------------------------------------------------------------------------------
 * State of the session.
 */
static const ek_model_info_t *info;
static int model_ready;           /* ek_model_init() succeeded */
static uint32_t load_expected;    /* bytes announced by "db load N" */
static uint32_t load_received;    /* bytes received since */
static int have_results;          /* an inference ran */
static uint64_t last_ticks;       /* ticks of the last timed run */
static uint32_t last_runs;        /* inferences in it */

static const char *type_name(ek_type_t type) {
  switch (type) {
    case EK_TYPE_INT8: return "i8";
    case EK_TYPE_UINT8: return "u8";
    case EK_TYPE_INT16: return "i16";
    case EK_TYPE_INT32: return "i32";
    case EK_TYPE_FLOAT32: return "f32";
  }
  return "unknown";
}

/* A decimal uint32_t; returns 0 on success, -1 when the text is empty, not a number, or too large. */
static int parse_u32(const char *s, uint32_t *value) {
  uint64_t v = 0;
  if (s == NULL || *s == '\0') {
    return -1;
  }
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9') {
      return -1;
    }
    v = v * 10u + (uint64_t)(*s - '0');
    if (v > 0xffffffffu) {
      return -1;
    }
  }
  *value = (uint32_t)v;
  return 0;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static uint32_t ticks_to_us(uint64_t ticks) {
  uint64_t tps = ek_platform_ticks_per_second();
  if (tps == 0u) {
    return 0u;
  }
  return (uint32_t)((ticks / tps) * 1000000u + ((ticks % tps) * 1000000u) / tps);
}

static void print_results(void) {
  const uint8_t *out = (const uint8_t *)ek_model_output();
  uint32_t i;
  out_str("m-results-[");
  for (i = 0; i < info->output_elements; i++) {
    if (i > 0) {
      out_char(',');
    }
    switch (info->output_type) {
      case EK_TYPE_INT8:
        out_i64((int8_t)out[i]);
        break;
      case EK_TYPE_UINT8:
        out_i64(out[i]);
        break;
      case EK_TYPE_INT16: {
        int16_t v;
        memcpy(&v, out + 2u * i, sizeof(v));
        out_i64(v);
        break;
      }
      case EK_TYPE_INT32: {
        int32_t v;
        memcpy(&v, out + 4u * i, sizeof(v));
        out_i64(v);
        break;
      }
      case EK_TYPE_FLOAT32: {
        float v;
        memcpy(&v, out + 4u * i, sizeof(v));
        out_f32(v);
        break;
      }
    }
  }
  out_str("]");
  out_end();
}

/* ------------------------------------------------------------------------------------------------------------
 * Commands.
 */
static void cmd_db(char *arg, char *extra) {
  uint32_t n;
  size_t len;
  size_t i;
  uint8_t *input = (uint8_t *)ek_model_input();
  if (arg == NULL) {
    out_error("db needs 'load N' or hex bytes");
    return;
  }
  if (strcmp(arg, "load") == 0) {
    if (parse_u32(extra, &n) != 0) {
      out_error("db load needs a byte count");
      return;
    }
    if (!model_ready || input == NULL) {
      out_error("model not initialized");
      return;
    }
    if (n != info->input_bytes) {
      out_str("e-[db load: the input is ");
      out_u64(info->input_bytes);
      out_str(" bytes, not ");
      out_u64(n);
      out_str("]");
      out_end();
      load_expected = 0;
      return;
    }
    load_expected = n;
    load_received = 0;
    out_str("m-[Expecting ");
    out_u64(n);
    out_str(" bytes]");
    out_end();
    return;
  }
  if (load_expected == 0u || input == NULL) {
    out_error("db: send 'db load N' first");
    return;
  }
  len = strlen(arg);
  if (len % 2u != 0u) {
    out_error("db: odd number of hex digits");
    return;
  }
  for (i = 0; i < len; i++) {
    if (hex_value(arg[i]) < 0) {
      out_error("db: not hex digits");
      return;
    }
  }
  if (len / 2u > (size_t)(load_expected - load_received)) {
    out_str("e-[db: more than the ");
    out_u64(load_expected);
    out_str(" bytes announced]");
    out_end();
    load_expected = 0;
    return;
  }
  for (i = 0; i < len; i += 2u) {
    input[load_received++] = (uint8_t)((hex_value(arg[i]) << 4) | hex_value(arg[i + 1u]));
  }
  if (load_received == load_expected) {
    load_expected = 0;
    out_line("m-load-done");
  }
}

/* e-[invoke failed: rc], the backend's status code. */
static void out_invoke_failed(int rc) {
  out_str("e-[invoke failed: ");
  out_i64(rc);
  out_str("]");
  out_end();
}

static void cmd_infer(char *count, char *warmups) {
  uint32_t n = 1;
  uint32_t w = 0;
  uint32_t i;
  int rc;
  uint64_t t0;
  uint64_t t1;
  if ((count != NULL && parse_u32(count, &n) != 0) || n == 0u ||
      (warmups != NULL && parse_u32(warmups, &w) != 0)) {
    out_error("infer needs N (>= 1) inferences and W warmups: infer N W");
    return;
  }
  if (!model_ready) {
    out_error("model not initialized");
    return;
  }
  out_str("m-warmup-start-");
  out_u64(w);
  out_end();
  for (i = 0; i < w; i++) {
    rc = ek_model_invoke();
    if (rc != 0) {
      out_invoke_failed(rc);
      return;
    }
  }
  out_line("m-warmup-done");
  out_str("m-infer-start-");
  out_u64(n);
  out_end();
  rc = 0;
  t0 = ek_platform_ticks();
  for (i = 0; i < n && rc == 0; i++) {
    rc = ek_model_invoke();
  }
  t1 = ek_platform_ticks();
  if (rc != 0) {
    out_invoke_failed(rc);
    return;
  }
  last_ticks = t1 - t0;
  last_runs = n;
  have_results = 1;
  /* Both timestamps are printed after the run so that no serial output falls inside the timed interval. */
  out_str("m-lap-us-");
  out_u64(ticks_to_us(t0));
  out_end();
  out_str("m-lap-us-");
  out_u64(ticks_to_us(t1));
  out_end();
  out_line("m-infer-done");
  print_results();
}

static void cmd_ek_info(void) {
  out_str("m-ek-info-backend-");
  out_text(info->backend != NULL ? info->backend : "unknown", 16);
  out_end();
  out_str("m-ek-info-input-");
  out_u64(info->input_bytes);
  out_char('-');
  out_str(type_name(info->input_type));
  out_end();
  out_str("m-ek-info-output-");
  out_u64(info->output_bytes);
  out_char('-');
  out_str(type_name(info->output_type));
  out_end();
  out_str("m-ek-info-layers-");
  out_u64(info->num_layers);
  out_end();
  out_str("m-ek-info-tps-");
  out_u64(ek_platform_ticks_per_second());
  out_end();
}

static void cmd_ek_mem(void) {
  out_str("m-ek-mem-arena-");
  out_u64(info->arena_bytes);
  out_end();
  out_str("m-ek-mem-arena-used-");
  out_u64(model_ready ? ek_model_arena_used() : 0u);
  out_end();
  out_str("m-ek-mem-stack-");
  out_u64(ek_platform_stack_peak());
  out_end();
}

static void cmd_ek_layers(void) {
  uint16_t i;
  for (i = 0; i < info->num_layers; i++) {
    const char *name = ek_model_layer_name(i);
    out_str("m-ek-layer-");
    out_u64(i);
    out_char('-');
    out_text(name != NULL ? name : "unknown", 48);
    out_char('-');
    out_u64(have_results ? ek_model_layer_ticks(i) : 0u);
    out_end();
  }
}

#if defined(__GNUC__)
/* The default for backends that keep no layer outputs (edgekit_backend.h): the backend's own one wins at link. */
__attribute__((weak)) const void *ek_model_layer_output(uint16_t layer, uint32_t *bytes) {
  (void)layer;
  *bytes = 0u;
  return NULL;
}
#endif

/* ek-layer-out N: run layers 0..N of one inference on the uploaded input, then print layer N's output tensor. */
static void cmd_ek_layer_out(char *arg) {
  uint32_t n;
  uint32_t bytes = 0u;
  uint32_t i;
  const uint8_t *data;
  if (parse_u32(arg, &n) != 0 || n >= info->num_layers) {
    out_error("ek-layer-out needs a layer index below the ek-info layers");
    return;
  }
  if (!model_ready) {
    out_error("model not initialized");
    return;
  }
  data = (const uint8_t *)ek_model_layer_output((uint16_t)n, &bytes);
  if (data == NULL) {
    out_error("ek-layer-out: this backend keeps no layer outputs");
    return;
  }
  out_str("m-ek-layer-out-");
  out_u64(n);
  out_char('-');
  for (i = 0; i < bytes; i++) {
    out_hex_byte(data[i]);
  }
  out_end();
}

static void cmd_ek_out(void) {
  const uint8_t *out = (const uint8_t *)ek_model_output();
  uint32_t i;
  out_str("m-ek-out-");
  for (i = 0; out != NULL && i < info->output_bytes; i++) {
    out_hex_byte(out[i]);
  }
  out_end();
}

/* Split cmd in place at spaces into at most max words; returns how many. */
static int split_words(char *cmd, char **words, int max) {
  int n = 0;
  char *p = cmd;
  while (*p != '\0' && n < max) {
    while (*p == ' ') {
      *p++ = '\0';
    }
    if (*p == '\0') {
      break;
    }
    words[n++] = p;
    while (*p != '\0' && *p != ' ') {
      p++;
    }
  }
  return n;
}

static void handle(char *cmd) {
  char echo[EK_ECHO_MAX + 1];
  char *words[4] = {NULL, NULL, NULL, NULL};
  int n;
  strncpy(echo, cmd, EK_ECHO_MAX);
  echo[EK_ECHO_MAX] = '\0';
  n = split_words(cmd, words, 4);
  if (n == 0) {
    return; /* an empty command: just m-ready */
  }
  if (strcmp(words[0], "name") == 0) {
    out_line("m-name-dut-[edgekit]");
  } else if (strcmp(words[0], "profile") == 0) {
    out_line("m-profile-[edgekit " EK_VERSION "]");
    out_str("m-model-[");
    out_text(info->model_name != NULL ? info->model_name : "unknown", 64);
    out_str("]");
    out_end();
  } else if (strcmp(words[0], "db") == 0) {
    cmd_db(words[1], words[2]);
  } else if (strcmp(words[0], "infer") == 0) {
    cmd_infer(words[1], words[2]);
  } else if (strcmp(words[0], "results") == 0) {
    if (have_results) {
      print_results();
    } else {
      out_error("no inference yet");
    }
  } else if (strcmp(words[0], "ek-info") == 0) {
    cmd_ek_info();
  } else if (strcmp(words[0], "ek-mem") == 0) {
    cmd_ek_mem();
  } else if (strcmp(words[0], "ek-ticks") == 0) {
    out_str("m-ek-ticks-");
    out_u64(last_ticks);
    out_char('-');
    out_u64(last_runs);
    out_end();
  } else if (strcmp(words[0], "ek-layers") == 0) {
    cmd_ek_layers();
  } else if (strcmp(words[0], "ek-out") == 0) {
    cmd_ek_out();
  } else if (strcmp(words[0], "ek-layer-out") == 0) {
    cmd_ek_layer_out(words[1]);
  } else {
    out_str("e-[unknown command: ");
    out_text(echo, EK_ECHO_MAX);
    out_str("]");
    out_end();
  }
}

static char cmd_buf[EK_CMD_MAX + 1];

int ek_app_run(void) {
  size_t len = 0;
  int too_long = 0;
  int rc;
  ek_platform_init();
  info = ek_model_info();
  rc = ek_model_init();
  model_ready = (rc == 0);
  out_line("m-init-done");
  if (!model_ready) {
    out_str("e-[init failed: ");
    out_i64(rc);
    out_str("]");
    out_end();
  }
  out_line("m-ready");
  for (;;) {
    int c = ek_platform_getc();
    if (c < 0) {
      return 0;
    }
    if (c == '\r' || c == '\n') {
      continue;
    }
    if (c == '%') {
      if (too_long) {
        out_error("command too long");
      } else {
        cmd_buf[len] = '\0';
        handle(cmd_buf);
      }
      out_line("m-ready");
      len = 0;
      too_long = 0;
    } else if (len < EK_CMD_MAX) {
      cmd_buf[len++] = (char)c;
    } else {
      too_long = 1;
    }
  }
}
