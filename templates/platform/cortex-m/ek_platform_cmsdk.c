/* ek_platform_cmsdk.c - bare-metal Cortex-M platform: CMSDK APB UART, SysTick ticks, stack painting.
 *
 * Serial input arrives by interrupt into a ring buffer, so bytes keep coming while the model runs and none is
 * lost; output is written by polling. Ticks count the SysTick clock (the core clock) in 64 bits. In QEMU with
 * -icount shift=0 every instruction takes 1 ns of emulated time, so ticks convert exactly to instructions:
 * instructions = ticks * 1e9 / EK_SYSTICK_HZ. They are not a real board's cycles.
 */
#include <stdint.h>

#include "edgekit_app.h"
#include "edgekit_platform.h"
#include "ek_board.h"
#include "ek_cortex_m.h"

/* CMSDK APB UART registers and bits. */
#define UART_DATA (EK_UART_BASE + 0x00u)
#define UART_STATE (EK_UART_BASE + 0x04u)
#define UART_CTRL (EK_UART_BASE + 0x08u)
#define UART_INTCLEAR (EK_UART_BASE + 0x0cu)
#define UART_BAUDDIV (EK_UART_BASE + 0x10u)
#define UART_STATE_TX_FULL (1u << 0)
#define UART_STATE_RX_FULL (1u << 1)
#define UART_STATE_RX_OVERRUN (1u << 3)
#define UART_CTRL_TX_EN (1u << 0)
#define UART_CTRL_RX_EN (1u << 1)
#define UART_CTRL_RX_INT_EN (1u << 3)
#define UART_INT_RX (1u << 1)
#define UART_INT_RX_OVERRUN (1u << 3)

#define RX_RING_BYTES 4096u /* a power of two, more than one whole command */

static volatile uint8_t rx_ring[RX_RING_BYTES];
static volatile uint32_t rx_head; /* written by the interrupt */
static volatile uint32_t rx_tail; /* written by ek_platform_getc */
static volatile uint32_t systick_wraps; /* since the last restart */
static uint64_t tick_base;               /* ticks counted before the last restart */

static uint32_t irq_save(void) {
  uint32_t primask;
  __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
  return primask;
}

static void irq_restore(uint32_t primask) { __asm volatile("msr primask, %0" ::"r"(primask) : "memory"); }

void ek_uart_rx_handler(void) {
  /* Clear first, then drain: a byte arriving while draining raises the interrupt again instead of being lost. */
  EK_REG(UART_INTCLEAR) = UART_INT_RX | UART_INT_RX_OVERRUN;
  while ((EK_REG(UART_STATE) & UART_STATE_RX_FULL) != 0u) {
    uint8_t byte = (uint8_t)EK_REG(UART_DATA);
    uint32_t head = rx_head;
    if (head - rx_tail < RX_RING_BYTES) { /* full: drop (the host waits for m-ready, so it does not happen) */
      rx_ring[head % RX_RING_BYTES] = byte;
      rx_head = head + 1u;
    }
  }
  EK_REG(UART_STATE) = UART_STATE_RX_OVERRUN; /* write 1 to clear */
}

void ek_systick_handler(void) { systick_wraps = systick_wraps + 1u; }

/* Ticks since SysTick was last restarted, read with interrupts masked. The counter counts down from
 * 0xffffff; each time it reaches 0 the interrupt counts a wrap (2^24 ticks). */
static uint64_t ticks_since_restart(void) {
  uint32_t wraps = systick_wraps;
  uint32_t value = EK_REG(EK_SYST_CVR);
  if ((EK_REG(EK_SCB_ICSR) & EK_ICSR_PENDSTSET) != 0u) {
    /* The counter wrapped but the interrupt has not run yet: count the wrap, read again after it. */
    value = EK_REG(EK_SYST_CVR);
    wraps++;
  }
  return ((uint64_t)wraps << 24) + (uint64_t)((0u - value) & 0x00ffffffu);
}

/* Restart SysTick from zero now, carrying the ticks counted so far into tick_base. Done after every byte
 * received: the tick edges are then at fixed instruction distances from the command just received, so with
 * -icount shift=0 the same command on the same image gives the same tick count on every run (otherwise the
 * phase of the clock at the start, set by when the host's bytes arrived, shifts counts by one tick). */
static void systick_restart(void) {
  uint32_t primask = irq_save();
  tick_base += ticks_since_restart();
  EK_REG(EK_SYST_CSR) = 0u;
  EK_REG(EK_SCB_ICSR) = EK_ICSR_PENDSTCLR;
  EK_REG(EK_SYST_CVR) = 0u;
  systick_wraps = 0u;
  EK_REG(EK_SYST_CSR) = 7u; /* enable, interrupt on wrap, core clock */
  irq_restore(primask);
}

void ek_platform_init(void) {
  EK_REG(UART_BAUDDIV) = EK_UART_BAUDDIV;
  EK_REG(UART_CTRL) = UART_CTRL_TX_EN | UART_CTRL_RX_EN | UART_CTRL_RX_INT_EN;
  EK_REG(EK_NVIC_ISER + 4u * (EK_UART_RX_IRQ / 32u)) = 1u << (EK_UART_RX_IRQ % 32u);

  EK_REG(EK_SYST_RVR) = 0x00ffffffu;
  systick_restart();
  __asm volatile("cpsie i" ::: "memory");
}

int ek_platform_getc(void) {
  uint8_t byte;
  for (;;) {
    /* Check and sleep with interrupts masked: WFI still wakes on a pending interrupt, so none is missed. */
    uint32_t primask = irq_save();
    if (rx_head != rx_tail) {
      irq_restore(primask);
      break;
    }
    __asm volatile("wfi" ::: "memory");
    irq_restore(primask);
  }
  byte = rx_ring[rx_tail % RX_RING_BYTES];
  rx_tail = rx_tail + 1u;
  systick_restart();
  return byte;
}

static void uart_putc(char c) {
  while ((EK_REG(UART_STATE) & UART_STATE_TX_FULL) != 0u) {
  }
  EK_REG(UART_DATA) = (uint8_t)c;
}

void ek_platform_write(const char *data, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    uart_putc(data[i]);
  }
}

uint64_t ek_platform_ticks(void) {
  uint32_t primask = irq_save();
  uint64_t ticks = tick_base + ticks_since_restart();
  irq_restore(primask);
  return ticks;
}

uint32_t ek_platform_ticks_per_second(void) { return EK_SYSTICK_HZ; }

uint32_t ek_platform_stack_peak(void) {
  extern uint32_t __stack_limit[];
  extern uint32_t __stack_top[];
  const uint32_t *p = __stack_limit;
  while (p < __stack_top && *p == EK_STACK_PAINT) {
    p++;
  }
  return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)p);
}

void ek_cortex_m_reset(void) {
  __asm volatile("dsb" ::: "memory");
  EK_REG(EK_SCB_AIRCR) = 0x05fa0004u; /* VECTKEY | SYSRESETREQ */
  __asm volatile("dsb" ::: "memory");
  for (;;) {
  }
}

void ek_cortex_m_fault(const char *what) {
  static const char prefix[] = "\r\ne-[fault: ";
  const char *p;
  EK_REG(UART_CTRL) = EK_REG(UART_CTRL) | UART_CTRL_TX_EN;
  for (p = prefix; *p != '\0'; p++) {
    uart_putc(*p);
  }
  for (p = what; *p != '\0'; p++) {
    uart_putc(*p);
  }
  uart_putc(']');
  uart_putc('\r');
  uart_putc('\n');
  ek_cortex_m_reset();
}

int main(void) { return ek_app_run(); }
