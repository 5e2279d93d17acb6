#include "tls/record.h"

#include <stdlib.h>
#include <string.h>

#include "proxyssl/engine.h"

#if defined(__SANITIZE_ADDRESS__)
#define RECBUF_POOL 0 /* let AddressSanitizer see every use after free */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RECBUF_POOL 0
#endif
#endif
#ifndef RECBUF_POOL
#define RECBUF_POOL 64
#endif

#if RECBUF_POOL
static _Thread_local uint8_t *recbuf_pool[RECBUF_POOL];
static _Thread_local unsigned recbuf_n;
#endif

uint8_t *pxy_recbuf_get(void)
{
#if RECBUF_POOL
	if (recbuf_n)
		return recbuf_pool[--recbuf_n];
#endif
	return malloc(PXY_TLS_MAX_RECORD);
}

void pxy_recbuf_put(uint8_t *p)
{
	if (!p)
		return;
#if RECBUF_POOL
	if (recbuf_n < RECBUF_POOL) {
		recbuf_pool[recbuf_n++] = p;
		return;
	}
#endif
	free(p);
}

void pxy_recbuf_pool_free(void)
{
#if RECBUF_POOL
	while (recbuf_n)
		free(recbuf_pool[--recbuf_n]);
#endif
}

void pxy_rec_init(struct pxy_rec_rd *r)
{
	memset(r, 0, sizeof(*r));
}

void pxy_rec_free(struct pxy_rec_rd *r)
{
	pxy_recbuf_put(r->buf);
	r->buf = NULL;
}

int pxy_rec_parse_hdr(const uint8_t hdr[5], struct pxy_rec_hdr *h)
{
	struct pxy_cur c = pxy_cur_make(hdr, 5);
	uint8_t type;
	uint16_t version, len;

	PXY_TRY(pxy_cur_u8(&c, &type));
	PXY_TRY(pxy_cur_u16(&c, &version));
	PXY_TRY(pxy_cur_u16(&c, &len));
	/* An SSLv2-format hello has the high bit of its first byte set. */
	if (type & 0x80)
		return PXY_E_NOT_TLS;
	if (type < PXY_CT_CHANGE_CIPHER_SPEC || type > PXY_CT_HEARTBEAT)
		return PXY_E_RECORD_TYPE;
	/* RFC 5246 appendix E: record versions are {3, x}. */
	if ((version >> 8) != 3)
		return PXY_E_RECORD_VERSION;
	/* RFC 5246 §6.2.3: TLSCiphertext.length MUST NOT exceed 2^14 + 2048. */
	if (len > PXY_TLS_MAX_CIPHERTEXT)
		return PXY_E_RECORD_OVERFLOW;
	h->type = type;
	h->version = version;
	h->len = len;
	return PXY_OK;
}

int pxy_rec_next(struct pxy_rec_rd *r, struct pxy_cur *in, struct pxy_record *out)
{
	if (!r->in_body) {
		size_t want = sizeof(r->hdr) - r->hdr_have;
		size_t n = in->left < want ? in->left : want;

		PXY_TRY(pxy_cur_copy(in, r->hdr + r->hdr_have, n));
		r->hdr_have = (uint8_t)(r->hdr_have + n);
		if (r->hdr_have < sizeof(r->hdr))
			return PXY_REC_MORE;
		PXY_TRY(pxy_rec_parse_hdr(r->hdr, &r->h));
		r->in_body = 1;
		r->skip = 0;
		r->have = 0;
		return PXY_REC_HEADER;
	}

	if (!r->skip && !r->buf) {
		r->buf = pxy_recbuf_get();
		if (!r->buf)
			return PXY_E_NOMEM;
		memcpy(r->buf, r->hdr, PXY_TLS_HDR_LEN);
	}
	{
		size_t want = r->h.len - r->have;
		size_t n = in->left < want ? in->left : want;

		if (r->skip)
			PXY_TRY(pxy_cur_skip(in, n));
		else
			PXY_TRY(pxy_cur_copy(in, r->buf + PXY_TLS_HDR_LEN + r->have, n));
		r->have += n;
		if (r->have < r->h.len)
			return PXY_REC_MORE;
	}
	out->h = r->h;
	out->buf = r->buf;
	out->buf_len = r->buf ? PXY_TLS_HDR_LEN + (size_t)r->h.len : 0;
	r->buf = NULL;
	r->in_body = 0;
	r->hdr_have = 0;
	r->records++;
	return PXY_REC_RECORD;
}

void pxy_rec_skip(struct pxy_rec_rd *r)
{
	r->skip = 1;
	pxy_recbuf_put(r->buf);
	r->buf = NULL;
}

int pxy_rec_idle(const struct pxy_rec_rd *r)
{
	return !r->in_body && r->hdr_have == 0;
}

void pxy_rec_alert(uint8_t out[7], uint16_t version, uint8_t level, uint8_t desc)
{
	out[0] = PXY_CT_ALERT;
	out[1] = (uint8_t)(version >> 8);
	out[2] = (uint8_t)version;
	out[3] = 0;
	out[4] = 2;
	out[5] = level;
	out[6] = desc;
}
