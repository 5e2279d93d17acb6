/*
 * The one way to read untrusted bytes.
 *
 * A read either succeeds whole and advances the cursor, or fails with
 * PXY_E_TRUNCATED and leaves the cursor where it was. Length-prefixed
 * sub-blocks come out as cursors of their own, which the caller must consume
 * exactly (pxy_cur_end). No other code does pointer arithmetic on wire bytes.
 */
#ifndef PXY_CURSOR_H
#define PXY_CURSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxyssl/error.h"

struct pxy_cur {
	const uint8_t *p;
	size_t left;
};

static inline struct pxy_cur pxy_cur_make(const uint8_t *p, size_t n)
{
	struct pxy_cur c = { p, n };
	return c;
}

static inline int pxy_cur_u8(struct pxy_cur *c, uint8_t *v)
{
	if (c->left < 1)
		return PXY_E_TRUNCATED;
	*v = c->p[0];
	c->p += 1;
	c->left -= 1;
	return PXY_OK;
}

static inline int pxy_cur_u16(struct pxy_cur *c, uint16_t *v)
{
	if (c->left < 2)
		return PXY_E_TRUNCATED;
	*v = (uint16_t)((uint16_t)c->p[0] << 8 | c->p[1]);
	c->p += 2;
	c->left -= 2;
	return PXY_OK;
}

static inline int pxy_cur_u24(struct pxy_cur *c, uint32_t *v)
{
	if (c->left < 3)
		return PXY_E_TRUNCATED;
	*v = (uint32_t)c->p[0] << 16 | (uint32_t)c->p[1] << 8 | c->p[2];
	c->p += 3;
	c->left -= 3;
	return PXY_OK;
}

static inline int pxy_cur_u32(struct pxy_cur *c, uint32_t *v)
{
	if (c->left < 4)
		return PXY_E_TRUNCATED;
	*v = (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 | c->p[3];
	c->p += 4;
	c->left -= 4;
	return PXY_OK;
}

/** Borrow n bytes in place. */
static inline int pxy_cur_bytes(struct pxy_cur *c, size_t n, const uint8_t **out)
{
	if (c->left < n)
		return PXY_E_TRUNCATED;
	*out = c->p;
	c->p += n;
	c->left -= n;
	return PXY_OK;
}

static inline int pxy_cur_copy(struct pxy_cur *c, void *dst, size_t n)
{
	const uint8_t *src;
	PXY_TRY(pxy_cur_bytes(c, n, &src));
	if (n)
		memcpy(dst, src, n);
	return PXY_OK;
}

static inline int pxy_cur_skip(struct pxy_cur *c, size_t n)
{
	const uint8_t *src;
	return pxy_cur_bytes(c, n, &src);
}

/** A sub-cursor over the next n bytes. */
static inline int pxy_cur_sub(struct pxy_cur *c, size_t n, struct pxy_cur *sub)
{
	const uint8_t *src;
	PXY_TRY(pxy_cur_bytes(c, n, &src));
	*sub = pxy_cur_make(src, n);
	return PXY_OK;
}

/* A length-prefixed sub-block; on failure the prefix is not consumed either. */
static inline int pxy_cur_sub_u8(struct pxy_cur *c, struct pxy_cur *sub)
{
	struct pxy_cur save = *c;
	uint8_t n;
	int r;
	if ((r = pxy_cur_u8(c, &n)) < 0 || (r = pxy_cur_sub(c, n, sub)) < 0) {
		*c = save;
		return r;
	}
	return PXY_OK;
}

static inline int pxy_cur_sub_u16(struct pxy_cur *c, struct pxy_cur *sub)
{
	struct pxy_cur save = *c;
	uint16_t n;
	int r;
	if ((r = pxy_cur_u16(c, &n)) < 0 || (r = pxy_cur_sub(c, n, sub)) < 0) {
		*c = save;
		return r;
	}
	return PXY_OK;
}

static inline int pxy_cur_sub_u24(struct pxy_cur *c, struct pxy_cur *sub)
{
	struct pxy_cur save = *c;
	uint32_t n;
	int r;
	if ((r = pxy_cur_u24(c, &n)) < 0 || (r = pxy_cur_sub(c, n, sub)) < 0) {
		*c = save;
		return r;
	}
	return PXY_OK;
}

/** A sub-block or message must be consumed exactly. */
static inline int pxy_cur_end(const struct pxy_cur *c)
{
	return c->left ? PXY_E_TRAILING : PXY_OK;
}

#endif
