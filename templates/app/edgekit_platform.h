/* edgekit_platform.h - what each board family provides to the application and the backends.
 *
 * One implementation per platform (host, bare-metal Cortex-M in QEMU, ESP-IDF, RP2040, STM32/nRF...): a serial
 * port, a monotonic tick counter and, where it can be measured, the stack's high-water mark.
 */
#ifndef EDGEKIT_PLATFORM_H
#define EDGEKIT_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void ek_platform_init(void);

/* Serial port: blocking read of one byte (-1 when the line is closed), write of n bytes. */
int ek_platform_getc(void);
void ek_platform_write(const char *data, size_t n);

/* Monotonic time. */
uint64_t ek_platform_ticks(void);
uint32_t ek_platform_ticks_per_second(void);

/* Peak stack use in bytes since reset (stack painting), 0 when the platform cannot tell. */
uint32_t ek_platform_stack_peak(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGEKIT_PLATFORM_H */
