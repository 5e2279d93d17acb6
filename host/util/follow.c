#include "util/follow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/ct.h"
#include "util/log.h"

int pxy_follow_init(struct pxy_follow *f, const char *path, const char *what)
{
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	f->what = what;
	f->path = strdup(path);
	return f->path ? 0 : -1;
}

void pxy_follow_free(struct pxy_follow *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	pxy_wipe(f->part, sizeof(f->part));
	pxy_wipe(f->sig, sizeof(f->sig));
	free(f->path);
	f->path = NULL;
}

static void restart(struct pxy_follow *f)
{
	f->off = 0;
	f->sig_len = 0;
	f->part_len = 0;
	f->part_overlong = 0;
}

/* (re)open the file from its start when it is there and not the one open */
static void reopen(struct pxy_follow *f)
{
	struct stat st;

	if (stat(f->path, &st) < 0) {
		if (!f->missing_logged)
			pxy_info("%s %s: %s (waiting for it)", f->what, f->path, strerror(errno));
		f->missing_logged = 1;
		return;
	}
	if (f->fd >= 0 && st.st_ino == f->ino && st.st_dev == f->dev)
		return;
	if (f->fd >= 0) {
		close(f->fd);
		f->reopened++; /* replaced (rotated): the new one from its start */
	}
	f->fd = open(f->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (f->fd < 0) {
		if (!f->missing_logged)
			pxy_warn("%s %s: %s", f->what, f->path, strerror(errno));
		f->missing_logged = 1;
		return;
	}
	f->missing_logged = 0;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	restart(f);
}

/* remember the last bytes read, to notice a rewrite */
static void keep_sig(struct pxy_follow *f, const char *buf, size_t n)
{
	if (n >= sizeof(f->sig)) {
		memcpy(f->sig, buf + n - sizeof(f->sig), sizeof(f->sig));
		f->sig_len = sizeof(f->sig);
	} else {
		size_t keep = f->sig_len + n > sizeof(f->sig) ? sizeof(f->sig) - n : f->sig_len;

		memmove(f->sig, f->sig + f->sig_len - keep, keep);
		memcpy(f->sig + keep, buf, n);
		f->sig_len = keep + n;
	}
}

void pxy_follow_read(struct pxy_follow *f, pxy_follow_fn fn, void *ctx)
{
	char buf[65536];
	struct stat st;

	reopen(f);
	if (f->fd < 0)
		return;
	if (f->off && fstat(f->fd, &st) == 0) {
		char now[sizeof(f->sig)];

		/* truncated, or truncated and rewritten: what it holds now is new */
		if (st.st_size < f->off ||
		    pread(f->fd, now, f->sig_len, f->off - (off_t)f->sig_len) != (ssize_t)f->sig_len ||
		    memcmp(now, f->sig, f->sig_len)) {
			restart(f);
			f->reopened++;
		}
	}
	for (;;) {
		ssize_t n = pread(f->fd, buf, sizeof(buf), f->off);

		if (n <= 0)
			break;
		f->off += n;
		keep_sig(f, buf, (size_t)n);
		for (ssize_t i = 0, start = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (i == n - 1) { /* a line still being written: kept for the next read */
					size_t k = (size_t)(n - start);

					if (f->part_len + k > sizeof(f->part))
						f->part_overlong = 1;
					else
						memcpy(f->part + f->part_len, buf + start, k), f->part_len += k;
				}
				continue;
			}
			if (f->part_overlong || f->part_len + (size_t)(i - start) > sizeof(f->part)) {
				fn(ctx, NULL, 0, 1);
			} else if (f->part_len) {
				memcpy(f->part + f->part_len, buf + start, (size_t)(i - start));
				fn(ctx, f->part, f->part_len + (size_t)(i - start), 0);
			} else {
				fn(ctx, buf + start, (size_t)(i - start), 0);
			}
			f->part_len = 0;
			f->part_overlong = 0;
			start = i + 1;
		}
	}
	pxy_wipe(buf, sizeof(buf));
}
