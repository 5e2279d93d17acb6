/*
 * Daemon log: one line per event, "2026-11-28T15:51:00.123Z LEVEL message".
 * Written to stderr or to the --log file (line-buffered, appended).
 */
#ifndef PXY_LOG_H
#define PXY_LOG_H

#include <stdio.h>

enum pxy_log_level { PXY_LOG_ERROR = 0, PXY_LOG_WARN = 1, PXY_LOG_INFO = 2, PXY_LOG_DEBUG = 3 };

/** Open the log: path NULL or "-" means stderr. 0 or -errno. */
int pxy_log_open(const char *path);
void pxy_log_close(void);
void pxy_log_set_level(enum pxy_log_level lvl);
/** Lines this thread writes carry "[NAME] " after the level (a virtual server's loop); NULL or "": none. */
void pxy_log_set_tag(const char *name);
int pxy_log_enabled(enum pxy_log_level lvl);

void pxy_log(enum pxy_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pxy_err_log(...) pxy_log(PXY_LOG_ERROR, __VA_ARGS__)
#define pxy_warn(...) pxy_log(PXY_LOG_WARN, __VA_ARGS__)
#define pxy_info(...) pxy_log(PXY_LOG_INFO, __VA_ARGS__)
#define pxy_debug(...)                                  \
	do {                                            \
		if (pxy_log_enabled(PXY_LOG_DEBUG))     \
			pxy_log(PXY_LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
