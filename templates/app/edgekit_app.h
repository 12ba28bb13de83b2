/* edgekit_app.h - the device application: serves the edgekit device protocol (docs/protocol.md).
 *
 * The same file runs on every board and with every backend: it only uses edgekit_backend.h (the model) and
 * edgekit_platform.h (serial port, ticks, stack). A platform's entry point (main, app_main, setup...) calls
 * ek_app_run() and nothing else.
 */
#ifndef EDGEKIT_APP_H
#define EDGEKIT_APP_H

#ifdef __cplusplus
extern "C" {
#endif

/* Longest command accepted, in bytes, without its '%' terminator. */
#define EK_CMD_MAX 2048

/* Initialise the platform and the model, print the banner, then answer commands until the serial line closes
 * (ek_platform_getc() returns -1, which only happens on the host). Returns 0 then. */
int ek_app_run(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGEKIT_APP_H */
