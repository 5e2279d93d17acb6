#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static FILE *log_fp;
static enum pxy_log_level log_level = PXY_LOG_INFO;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

int pxy_log_open(const char *path)
{
	FILE *fp;

	if (!path || !strcmp(path, "-")) {
		pxy_log_close();
		return 0;
	}
	fp = fopen(path, "ae");
	if (!fp)
		return -errno;
	setvbuf(fp, NULL, _IOLBF, 0);
	pxy_log_close();
	log_fp = fp;
	return 0;
}

void pxy_log_close(void)
{
	if (log_fp)
		fclose(log_fp);
	log_fp = NULL;
}

void pxy_log_set_level(enum pxy_log_level lvl)
{
	log_level = lvl;
}

int pxy_log_enabled(enum pxy_log_level lvl)
{
	return lvl <= log_level;
}

void pxy_log(enum pxy_log_level lvl, const char *fmt, ...)
{
	FILE *fp = log_fp ? log_fp : stderr;
	struct timespec ts;
	struct tm tm;
	char stamp[40];
	char line[4096];
	va_list ap;

	if (!pxy_log_enabled(lvl))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* one fprintf per line: lines from several threads never interleave */
	fprintf(fp, "%s.%03ldZ %s %s\n", stamp, ts.tv_nsec / 1000000, level_names[lvl], line);
}
