#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static FILE *log_fp;
/* the log may be reopened (SIGHUP) while other threads write to it */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static enum pxy_log_level log_level = PXY_LOG_INFO;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
static __thread char log_tag[48]; /* "[NAME] " of the virtual server this thread runs, or "" */

void pxy_log_set_tag(const char *name)
{
	if (name && *name)
		snprintf(log_tag, sizeof(log_tag), "[%s] ", name);
	else
		log_tag[0] = '\0';
}

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
	pthread_mutex_lock(&log_mu);
	if (log_fp)
		fclose(log_fp);
	log_fp = fp;
	pthread_mutex_unlock(&log_mu);
	return 0;
}

void pxy_log_close(void)
{
	pthread_mutex_lock(&log_mu);
	if (log_fp)
		fclose(log_fp);
	log_fp = NULL;
	pthread_mutex_unlock(&log_mu);
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
	/* one fprintf per line, under the lock: lines from several threads never interleave */
	pthread_mutex_lock(&log_mu);
	fprintf(log_fp ? log_fp : stderr, "%s.%03ldZ %s %s%s\n", stamp, ts.tv_nsec / 1000000, level_names[lvl], log_tag, line);
	pthread_mutex_unlock(&log_mu);
}
