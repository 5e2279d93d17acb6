/*
 * TLS record reassembly, one instance per direction.
 *
 * Bytes arrive in whatever pieces TCP delivers; the reader turns them into
 * whole records (RFC 5246 §6.2). It validates every header before trusting
 * its length, and holds at most one record's bytes at a time.
 */
#ifndef PXY_RECORD_H
#define PXY_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "tls/cursor.h"

enum pxy_content_type {
	PXY_CT_CHANGE_CIPHER_SPEC = 20,
	PXY_CT_ALERT = 21,
	PXY_CT_HANDSHAKE = 22,
	PXY_CT_APPLICATION_DATA = 23,
	PXY_CT_HEARTBEAT = 24,
};

struct pxy_rec_hdr {
	uint8_t type;
	uint16_t version;
	uint16_t len;
};

/** A whole record: buf holds the 5-byte header and the fragment; the caller owns buf. */
struct pxy_record {
	struct pxy_rec_hdr h;
	uint8_t *buf;
	size_t buf_len;
};

struct pxy_rec_rd {
	uint8_t hdr[5];
	uint8_t hdr_have;
	uint8_t skip;     /* discard this record's fragment */
	uint8_t in_body;  /* header parsed, fragment being gathered */
	struct pxy_rec_hdr h;
	uint8_t *buf;
	size_t have;      /* fragment bytes gathered or skipped */
	uint64_t records; /* whole records seen */
};

enum pxy_rec_ev {
	PXY_REC_MORE = 0,   /* input used up, no record finished */
	PXY_REC_HEADER = 1, /* a header was parsed (r->h); the caller may pxy_rec_skip() */
	PXY_REC_RECORD = 2, /* a whole record is in *out (or was skipped: out->buf NULL) */
};

/**
 * Record buffers (PXY_TLS_MAX_RECORD bytes), recycled through a small
 * per-thread pool: a bulk transfer allocates one per record, so malloc and
 * first-touch page faults would otherwise sit on the hot path. Buffers are
 * plain malloc blocks: free() is also correct, pxy_recbuf_put() is cheaper.
 */
uint8_t *pxy_recbuf_get(void);
void pxy_recbuf_put(uint8_t *p);
/** Free the calling thread's pooled buffers (a thread that ends calls it). */
void pxy_recbuf_pool_free(void);

void pxy_rec_init(struct pxy_rec_rd *r);
void pxy_rec_free(struct pxy_rec_rd *r);

/** Parse a record header (validation only): type, version 3.x, length bound. */
int pxy_rec_parse_hdr(const uint8_t hdr[5], struct pxy_rec_hdr *h);

/**
 * Consume bytes from *in until an event. Returns an enum pxy_rec_ev or a
 * protocol error (bad header) / PXY_E_NOMEM. After an error the reader is
 * unusable for this stream.
 */
int pxy_rec_next(struct pxy_rec_rd *r, struct pxy_cur *in, struct pxy_record *out);

/** After PXY_REC_HEADER: do not keep this record's fragment. */
void pxy_rec_skip(struct pxy_rec_rd *r);

/** 1 if the reader is between records (no partial header or fragment). */
int pxy_rec_idle(const struct pxy_rec_rd *r);

/** Write a plaintext alert record into out (7 bytes). */
void pxy_rec_alert(uint8_t out[7], uint16_t version, uint8_t level, uint8_t desc);

#endif
