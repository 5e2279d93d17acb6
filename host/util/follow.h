/*
 * Following a text file that another process appends lines to (a key log):
 * what it gained since the last read, line by line, across truncation (even
 * a rewrite to the same length: the bytes before the read position are
 * checked) and rotation (a new inode at the path), waiting for a file that
 * is not there yet. Lines over PXY_FOLLOW_LINE_MAX bytes are reported as
 * overlong, not cut. The bytes read are wiped (a key log is secret).
 */
#ifndef PXY_FOLLOW_H
#define PXY_FOLLOW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PXY_FOLLOW_LINE_MAX 1024

struct pxy_follow {
	char *path;
	const char *what; /* for the log: "key source", "keyfwd" */
	int fd;
	dev_t dev;
	ino_t ino;
	off_t off;
	char part[PXY_FOLLOW_LINE_MAX];
	size_t part_len;
	int part_overlong, missing_logged;
	char sig[64]; /* the bytes just before `off`, as read */
	size_t sig_len;
	uint64_t reopened; /* truncated or replaced, read again from the start */
};

/** Line callback: a whole line without its newline (overlong: too long, line NULL). */
typedef void (*pxy_follow_fn)(void *ctx, const char *line, size_t len, int overlong);

/** 0, or -1 (out of memory). */
int pxy_follow_init(struct pxy_follow *f, const char *path, const char *what);
void pxy_follow_free(struct pxy_follow *f);

/** Read what the file gained; each whole line goes to fn. */
void pxy_follow_read(struct pxy_follow *f, pxy_follow_fn fn, void *ctx);

#endif
