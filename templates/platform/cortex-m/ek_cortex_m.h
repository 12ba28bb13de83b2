/* ek_cortex_m.h - the few Cortex-M system registers the platform uses, and what startup.c shares with it. */
#ifndef EK_CORTEX_M_H
#define EK_CORTEX_M_H

#include <stdint.h>

#define EK_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

#define EK_SYST_CSR 0xe000e010u  /* SysTick control and status */
#define EK_SYST_RVR 0xe000e014u  /* SysTick reload value */
#define EK_SYST_CVR 0xe000e018u  /* SysTick current value */
#define EK_NVIC_ISER 0xe000e100u /* NVIC interrupt set-enable, 32 lines per register */
#define EK_SCB_ICSR 0xe000ed04u  /* interrupt control and state */
#define EK_SCB_VTOR 0xe000ed08u  /* vector table offset */
#define EK_SCB_AIRCR 0xe000ed0cu /* application interrupt and reset control */
#define EK_SCB_CPACR 0xe000ed88u /* coprocessor access control */

#define EK_ICSR_PENDSTSET (1u << 26)
#define EK_ICSR_PENDSTCLR (1u << 25)

/* What the stack is painted with at reset; words still holding it were never used. */
#define EK_STACK_PAINT 0xdeadbeefu

extern void (*const ek_vectors[])(void);

void ek_systick_handler(void);
void ek_uart_rx_handler(void);

/* Print "e-[fault: what]" on the serial port and reset. */
void ek_cortex_m_fault(const char *what) __attribute__((noreturn));
void ek_cortex_m_reset(void) __attribute__((noreturn));

#endif /* EK_CORTEX_M_H */
