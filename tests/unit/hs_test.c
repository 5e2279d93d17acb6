/* Handshake reassembly and parsers: valid, truncated, oversized, nested-length-overflow inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/hs.h"
#include "tls/suites.h"

/* A tiny builder with back-patched length prefixes. */
struct b {
	uint8_t p[8192];
	size_t n;
	size_t open[8];
	int depth;
	int width[8];
};

static void u8(struct b *b, unsigned v) { b->p[b->n++] = (uint8_t)v; }
static void u16(struct b *b, unsigned v) { u8(b, v >> 8); u8(b, v); }
static void u24(struct b *b, unsigned v) { u8(b, v >> 16); u16(b, v & 0xffff); }
static void raw(struct b *b, const void *p, size_t n) { memcpy(b->p + b->n, p, n); b->n += n; }
static void open_(struct b *b, int width)
{
	b->open[b->depth] = b->n;
	b->width[b->depth++] = width;
	b->n += (size_t)width;
}
static void close_(struct b *b)
{
	size_t at = b->open[--b->depth], len = b->n - at - (size_t)b->width[b->depth];
	for (int i = b->width[b->depth] - 1; i >= 0; i--, len >>= 8)
		b->p[at + (size_t)i] = (uint8_t)len;
}

static void client_hello(struct b *b, int dup_ems, const char *sni)
{
	static const uint8_t rnd[32] = { 1, 2, 3 };

	b->n = 0;
	b->depth = 0;
	u16(b, 0x0303);
	raw(b, rnd, 32);
	u8(b, 4);
	raw(b, "\xaa\xbb\xcc\xdd", 4);
	open_(b, 2);
	u16(b, 0xc02f);
	u16(b, 0x009c);
	u16(b, 0x00ff);
	close_(b);
	u8(b, 1);
	u8(b, 0);
	open_(b, 2); /* extensions */
	u16(b, PXY_EXT_SERVER_NAME);
	open_(b, 2);
	open_(b, 2);
	u8(b, 0);
	open_(b, 2);
	raw(b, sni, strlen(sni));
	close_(b);
	close_(b);
	close_(b);
	u16(b, PXY_EXT_EXTENDED_MASTER_SECRET);
	u16(b, 0);
	if (dup_ems) {
		u16(b, PXY_EXT_EXTENDED_MASTER_SECRET);
		u16(b, 0);
	}
	u16(b, PXY_EXT_ENCRYPT_THEN_MAC);
	u16(b, 0);
	u16(b, PXY_EXT_SESSION_TICKET);
	u16(b, 0);
	u16(b, PXY_EXT_SUPPORTED_VERSIONS);
	open_(b, 2);
	open_(b, 1);
	u16(b, 0x0304);
	u16(b, 0x0303);
	close_(b);
	close_(b);
	u16(b, PXY_EXT_RENEGOTIATION_INFO);
	u16(b, 1);
	u8(b, 0);
	u16(b, 0x1234); /* unknown extension, ignored */
	u16(b, 3);
	raw(b, "xyz", 3);
	close_(b);
}

static void test_client_hello(void **state)
{
	struct b b;
	struct pxy_client_hello ch;

	(void)state;
	client_hello(&b, 0, "example.com");
	assert_int_equal(pxy_hs_parse_client_hello(pxy_cur_make(b.p, b.n), &ch), PXY_OK);
	assert_int_equal(ch.version, 0x0303);
	assert_int_equal(ch.random[2], 3);
	assert_int_equal(ch.sid_len, 4);
	assert_int_equal(ch.n_suites, 3);
	assert_true(ch.offers_rsa);
	assert_true(ch.scsv_reneg);
	assert_true(ch.ems);
	assert_true(ch.etm);
	assert_true(ch.ticket);
	assert_true(ch.offers_tls13);
	assert_true(ch.reneg_info);
	assert_string_equal(ch.sni, "example.com");

	/* every strict prefix fails cleanly (except where extensions may simply end) */
	for (size_t cut = 0; cut < b.n; cut++) {
		int r = pxy_hs_parse_client_hello(pxy_cur_make(b.p, cut), &ch);
		assert_true(r < 0 || cut == 49); /* a ClientHello without extensions is valid */
	}
	/* one byte too many */
	b.p[b.n++] = 0;
	assert_int_equal(pxy_hs_parse_client_hello(pxy_cur_make(b.p, b.n), &ch), PXY_E_TRAILING);
}

static void test_client_hello_negative(void **state)
{
	struct b b;
	struct pxy_client_hello ch;
	size_t ext_len_at;

	(void)state;
	client_hello(&b, 1, "a");
	assert_int_equal(pxy_hs_parse_client_hello(pxy_cur_make(b.p, b.n), &ch), PXY_E_ILLEGAL_PARAM);

	/* an extension that claims more than the extensions block holds */
	client_hello(&b, 0, "a");
	ext_len_at = 2 + 32 + 1 + 4 + 2 + 6 + 2 + 2 + 2; /* the server_name extension's own length */
	b.p[ext_len_at] = 0x40;
	assert_int_equal(pxy_hs_parse_client_hello(pxy_cur_make(b.p, b.n), &ch), PXY_E_TRUNCATED);

	/* session id longer than 32 */
	client_hello(&b, 0, "a");
	b.p[34] = 33;
	assert_true(pxy_hs_parse_client_hello(pxy_cur_make(b.p, b.n), &ch) < 0);

	/* odd cipher-suite list */
	client_hello(&b, 0, "a");
	b.p[2 + 32 + 1 + 4 + 1] = 5;
	assert_true(pxy_hs_parse_client_hello(pxy_cur_make(b.p, b.n), &ch) < 0);

	/* compression methods without null */
	client_hello(&b, 0, "a");
	b.p[2 + 32 + 1 + 4 + 2 + 6 + 1] = 1;
	assert_int_equal(pxy_hs_parse_client_hello(pxy_cur_make(b.p, b.n), &ch), PXY_E_ILLEGAL_PARAM);

	/* a host name with control bytes is logged safely, and long names are cut */
	client_hello(&b, 0, "ev\x01l\nhost");
	assert_int_equal(pxy_hs_parse_client_hello(pxy_cur_make(b.p, b.n), &ch), PXY_OK);
	assert_string_equal(ch.sni, "ev?l?host");
	{
		char longname[400];
		memset(longname, 'x', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		client_hello(&b, 0, longname);
		assert_int_equal(pxy_hs_parse_client_hello(pxy_cur_make(b.p, b.n), &ch), PXY_OK);
		assert_int_equal(strlen(ch.sni), PXY_MAX_SNI);
	}
}

/* any number of extensions, each type at most once (no table of fixed size) */
static void test_many_extensions(void **state)
{
	static uint8_t m[2 + 32 + 1 + 4 + 2 + 2 + 4 * 2000];
	struct pxy_client_hello ch;
	size_t n = 0, ext_at;

	(void)state;
	m[n++] = 3;
	m[n++] = 3;
	n += 32;
	m[n++] = 0;
	m[n++] = 0, m[n++] = 2, m[n++] = 0x00, m[n++] = 0x2f; /* one suite */
	m[n++] = 1, m[n++] = 0;                               /* null compression */
	ext_at = n;
	n += 2;
	for (unsigned i = 0; i < 2000; i++) {
		m[n++] = (uint8_t)((0x3000 + i) >> 8), m[n++] = (uint8_t)(0x3000 + i);
		m[n++] = 0, m[n++] = 0;
	}
	m[ext_at] = (uint8_t)((n - ext_at - 2) >> 8);
	m[ext_at + 1] = (uint8_t)(n - ext_at - 2);
	assert_int_equal(pxy_hs_parse_client_hello(pxy_cur_make(m, n), &ch), PXY_OK);
	/* the 2000th repeats the first */
	m[n - 4] = 0x30, m[n - 3] = 0x00;
	assert_int_equal(pxy_hs_parse_client_hello(pxy_cur_make(m, n), &ch), PXY_E_ILLEGAL_PARAM);
}

/* RFC 5246 E.2: the SSLv2-compatible hello, from msg_type on */
static void test_sslv2_client_hello(void **state)
{
	uint8_t m[9 + 9 + 16 + 20];
	struct pxy_client_hello ch;
	size_t n = 0;

	(void)state;
	m[n++] = 1;                               /* CLIENT-HELLO */
	m[n++] = 3, m[n++] = 1;                   /* TLS 1.0 */
	m[n++] = 0, m[n++] = 9;                   /* three cipher specs */
	m[n++] = 0, m[n++] = 16;                  /* a session id */
	m[n++] = 0, m[n++] = 20;                  /* a 20-byte challenge */
	m[n++] = 0x01, m[n++] = 0x00, m[n++] = 0x80; /* an SSL 2.0 kind: no TLS suite */
	m[n++] = 0x00, m[n++] = 0x00, m[n++] = 0x2f; /* TLS_RSA_WITH_AES_128_CBC_SHA */
	m[n++] = 0x00, m[n++] = 0x00, m[n++] = 0xff; /* the renegotiation SCSV */
	memset(m + n, 0xaa, 16), n += 16;
	for (int i = 0; i < 20; i++)
		m[n++] = (uint8_t)(i + 1);
	assert_int_equal(pxy_hs_parse_sslv2_client_hello(pxy_cur_make(m, n), &ch), PXY_OK);
	assert_int_equal(ch.version, 0x0301);
	assert_int_equal(ch.n_suites, 2);
	assert_true(ch.offers_rsa && ch.scsv_reneg && ch.sslv2);
	assert_int_equal(ch.sid_len, 16);
	/* the challenge, right-aligned behind zeros */
	for (int i = 0; i < 12; i++)
		assert_int_equal(ch.random[i], 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(ch.random[12 + i], i + 1);
	/* SSL 2.0 itself is not taken; a short challenge, a ragged spec list or a trailing byte is malformed */
	m[1] = 0, m[2] = 2;
	assert_int_equal(pxy_hs_parse_sslv2_client_hello(pxy_cur_make(m, n), &ch), PXY_E_RECORD_VERSION);
	m[1] = 3, m[2] = 3;
	assert_int_equal(pxy_hs_parse_sslv2_client_hello(pxy_cur_make(m, n), &ch), PXY_OK);
	m[8] = 15;
	assert_true(pxy_hs_parse_sslv2_client_hello(pxy_cur_make(m, n), &ch) < 0);
	m[8] = 20, m[4] = 8;
	assert_true(pxy_hs_parse_sslv2_client_hello(pxy_cur_make(m, n), &ch) < 0);
	m[4] = 9;
	assert_true(pxy_hs_parse_sslv2_client_hello(pxy_cur_make(m, n - 1), &ch) < 0);
}

static void test_server_hello(void **state)
{
	struct b b = { .n = 0 };
	struct pxy_server_hello sh;
	uint8_t rnd[32] = { 9 };

	(void)state;
	u16(&b, 0x0303);
	raw(&b, rnd, 32);
	u8(&b, 0);
	u16(&b, 0x009c);
	u8(&b, 0);
	open_(&b, 2);
	u16(&b, PXY_EXT_EXTENDED_MASTER_SECRET);
	u16(&b, 0);
	u16(&b, PXY_EXT_SUPPORTED_VERSIONS);
	u16(&b, 2);
	u16(&b, 0x0304);
	close_(&b);
	assert_int_equal(pxy_hs_parse_server_hello(pxy_cur_make(b.p, b.n), &sh), PXY_OK);
	assert_int_equal(sh.legacy_version, 0x0303);
	assert_int_equal(sh.version, 0x0304);
	assert_true(sh.ems);
	assert_false(sh.hello_retry);
	assert_int_equal(sh.suite, 0x009c);
	for (size_t cut = 0; cut < b.n; cut++)
		assert_true(pxy_hs_parse_server_hello(pxy_cur_make(b.p, cut), &sh) < 0 || cut == 38);

	/* EMS with a body is malformed */
	b.p[b.n - 8] = 1;
	assert_true(pxy_hs_parse_server_hello(pxy_cur_make(b.p, b.n), &sh) < 0);

	/* HelloRetryRequest's special random */
	{
		static const uint8_t hrr[32] = { 0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C,
						 0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB,
						 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C };
		b.n = 0;
		u16(&b, 0x0303);
		raw(&b, hrr, 32);
		u8(&b, 0);
		u16(&b, 0x1301);
		u8(&b, 0);
		assert_int_equal(pxy_hs_parse_server_hello(pxy_cur_make(b.p, b.n), &sh), PXY_OK);
		assert_true(sh.hello_retry);
	}
}

static void test_certificate(void **state)
{
	struct b b = { .n = 0 };
	struct pxy_certificate c;

	(void)state;
	open_(&b, 3);
	open_(&b, 3);
	raw(&b, "LEAF", 4);
	close_(&b);
	open_(&b, 3);
	raw(&b, "CA", 2);
	close_(&b);
	close_(&b);
	assert_int_equal(pxy_hs_parse_certificate(pxy_cur_make(b.p, b.n), &c), PXY_OK);
	assert_int_equal(c.count, 2);
	assert_int_equal(c.leaf_len, 4);
	assert_memory_equal(c.leaf, "LEAF", 4);
	/* inner length overflowing the list */
	b.p[5] = 0x10;
	assert_int_equal(pxy_hs_parse_certificate(pxy_cur_make(b.p, b.n), &c), PXY_E_TRUNCATED);
	b.p[5] = 4;
	/* outer length overflowing the message */
	b.p[2]++;
	assert_int_equal(pxy_hs_parse_certificate(pxy_cur_make(b.p, b.n), &c), PXY_E_TRUNCATED);
	b.p[2]--;
	/* trailing byte after the list */
	b.p[b.n++] = 0;
	assert_int_equal(pxy_hs_parse_certificate(pxy_cur_make(b.p, b.n), &c), PXY_E_TRAILING);
	/* empty list (a client without a certificate) */
	b.n = 0;
	u24(&b, 0);
	assert_int_equal(pxy_hs_parse_certificate(pxy_cur_make(b.p, b.n), &c), PXY_OK);
	assert_int_equal(c.count, 0);
	assert_null(c.leaf);
	/* a zero-length certificate */
	b.n = 0;
	u24(&b, 3);
	u24(&b, 0);
	assert_int_equal(pxy_hs_parse_certificate(pxy_cur_make(b.p, b.n), &c), PXY_E_DECODE);
}

static void test_small_messages(void **state)
{
	struct b b = { .n = 0 };
	const uint8_t *p;
	size_t n;
	uint32_t life;

	(void)state;
	/* ClientKeyExchange: length-prefixed from TLS 1.0, raw in SSL 3.0 */
	u16(&b, 3);
	raw(&b, "abc", 3);
	assert_int_equal(pxy_hs_parse_cke_rsa(pxy_cur_make(b.p, b.n), 0x0303, &p, &n), PXY_OK);
	assert_int_equal(n, 3);
	assert_int_equal(pxy_hs_parse_cke_rsa(pxy_cur_make(b.p, b.n - 1), 0x0303, &p, &n), PXY_E_TRUNCATED);
	assert_int_equal(pxy_hs_parse_cke_rsa(pxy_cur_make(b.p, b.n), 0x0300, &p, &n), PXY_OK);
	assert_int_equal(n, 5);
	assert_int_equal(pxy_hs_parse_cke_rsa(pxy_cur_make(b.p, 2), 0x0303, &p, &n) < 0, 1);

	/* Finished: exactly 12 bytes */
	memset(b.p, 7, 13);
	assert_int_equal(pxy_hs_parse_finished(pxy_cur_make(b.p, 12), &p), PXY_OK);
	assert_int_equal(pxy_hs_parse_finished(pxy_cur_make(b.p, 11), &p), PXY_E_TRUNCATED);
	assert_int_equal(pxy_hs_parse_finished(pxy_cur_make(b.p, 13), &p), PXY_E_TRAILING);

	/* NewSessionTicket */
	b.n = 0;
	u16(&b, 0);
	u16(&b, 300);
	u16(&b, 2);
	raw(&b, "tk", 2);
	assert_int_equal(pxy_hs_parse_new_session_ticket(pxy_cur_make(b.p, b.n), &life, &p, &n), PXY_OK);
	assert_int_equal(life, 300);
	assert_int_equal(n, 2);

	/* CertificateRequest (TLS 1.2) with one distinguished name */
	b.n = 0;
	u8(&b, 1);
	u8(&b, 1);
	u16(&b, 2);
	u16(&b, 0x0401);
	open_(&b, 2);
	open_(&b, 2);
	raw(&b, "DN", 2);
	close_(&b);
	close_(&b);
	assert_int_equal(pxy_hs_parse_certificate_request(pxy_cur_make(b.p, b.n), 0x0303), PXY_OK);
	assert_true(pxy_hs_parse_certificate_request(pxy_cur_make(b.p, b.n - 1), 0x0303) < 0);

	/* CertificateVerify */
	b.n = 0;
	u16(&b, 0x0401);
	u16(&b, 2);
	u16(&b, 0xabcd);
	assert_int_equal(pxy_hs_parse_certificate_verify(pxy_cur_make(b.p, b.n), 0x0303), PXY_OK);
	assert_int_equal(pxy_hs_parse_certificate_verify(pxy_cur_make(b.p, b.n), 0x0301), PXY_E_TRUNCATED);

	assert_int_equal(pxy_hs_parse_empty(pxy_cur_make(b.p, 0)), PXY_OK);
	assert_int_equal(pxy_hs_parse_empty(pxy_cur_make(b.p, 1)), PXY_E_DECODE);
}

static void test_reassembly(void **state)
{
	struct pxy_hs_rd h;
	struct pxy_hs_msg m;
	uint8_t two[4 + 3 + 4 + 0] = { 14, 0, 0, 3, 'a', 'b', 'c', 14, 0, 0, 0 };

	(void)state;
	pxy_hs_init(&h, 1024);
	/* two messages fed one byte at a time */
	for (size_t i = 0; i < sizeof(two); i++) {
		assert_int_equal(pxy_hs_feed(&h, two + i, 1), PXY_OK);
		if (i < 6)
			assert_int_equal(pxy_hs_peek(&h, &m), 0);
	}
	assert_int_equal(pxy_hs_peek(&h, &m), 1);
	assert_int_equal(m.type, 14);
	assert_int_equal(m.body.left, 3);
	assert_int_equal(m.raw_len, 7);
	pxy_hs_pop(&h);
	assert_int_equal(pxy_hs_peek(&h, &m), 1);
	assert_int_equal(m.body.left, 0);
	pxy_hs_pop(&h);
	assert_true(pxy_hs_empty(&h));

	/* a header announcing more than the limit is refused at once */
	{
		uint8_t big[4] = { 11, 0x01, 0x00, 0x00 }; /* 65536 > 1024 */
		assert_int_equal(pxy_hs_feed(&h, big, 4), PXY_E_HS_TOO_LARGE);
	}
	pxy_hs_free(&h);

	/* the largest allowed message, in pieces */
	pxy_hs_init(&h, 20000);
	{
		uint8_t *msg = calloc(1, 4 + 20000);
		msg[0] = 11;
		msg[1] = 0;
		msg[2] = (uint8_t)(20000 >> 8);
		msg[3] = (uint8_t)(20000 & 0xff);
		for (size_t off = 0; off < 20004; off += 16384)
			assert_int_equal(pxy_hs_feed(&h, msg + off, off + 16384 > 20004 ? 20004 - off : 16384), PXY_OK);
		assert_int_equal(pxy_hs_peek(&h, &m), 1);
		assert_int_equal(m.body.left, 20000);
		free(msg);
	}
	pxy_hs_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_hello),
		cmocka_unit_test(test_client_hello_negative),
		cmocka_unit_test(test_many_extensions),
		cmocka_unit_test(test_sslv2_client_hello),
		cmocka_unit_test(test_server_hello),
		cmocka_unit_test(test_certificate),
		cmocka_unit_test(test_small_messages),
		cmocka_unit_test(test_reassembly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
