/* Record reassembly: headers validated before trusting lengths, any split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/record.h"
#include "tls/suites.h"

static void test_header_validation(void **state)
{
	struct pxy_rec_hdr h;
	uint8_t hdr[5] = { 22, 3, 3, 0, 10 };

	(void)state;
	assert_int_equal(pxy_rec_parse_hdr(hdr, &h), PXY_OK);
	assert_int_equal(h.type, 22);
	assert_int_equal(h.version, 0x0303);
	assert_int_equal(h.len, 10);
	for (unsigned t = 0; t < 256; t++) {
		hdr[0] = (uint8_t)t;
		int r = pxy_rec_parse_hdr(hdr, &h);
		if (t >= 20 && t <= 24)
			assert_int_equal(r, PXY_OK);
		else if (t & 0x80)
			assert_int_equal(r, PXY_E_NOT_TLS); /* SSLv2-format hello */
		else
			assert_int_equal(r, PXY_E_RECORD_TYPE);
	}
	hdr[0] = 23;
	hdr[1] = 2;
	assert_int_equal(pxy_rec_parse_hdr(hdr, &h), PXY_E_RECORD_VERSION);
	hdr[1] = 3;
	hdr[3] = (uint8_t)((16384 + 2048) >> 8);
	hdr[4] = (uint8_t)(16384 + 2048);
	assert_int_equal(pxy_rec_parse_hdr(hdr, &h), PXY_OK);
	hdr[4]++;
	assert_int_equal(pxy_rec_parse_hdr(hdr, &h), PXY_E_RECORD_OVERFLOW);
	assert_int_equal(pxy_err_alert(PXY_E_RECORD_OVERFLOW), 22);
}

/* Builds a stream of records of the given sizes. */
static size_t build(uint8_t *out, const size_t *sizes, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		out[o++] = 23;
		out[o++] = 3;
		out[o++] = 3;
		out[o++] = (uint8_t)(sizes[i] >> 8);
		out[o++] = (uint8_t)sizes[i];
		for (size_t j = 0; j < sizes[i]; j++)
			out[o++] = (uint8_t)(i * 7 + j);
	}
	return o;
}

static void check_split(const uint8_t *stream, size_t len, const size_t *sizes, size_t n, size_t step)
{
	struct pxy_rec_rd r;
	size_t got = 0;

	pxy_rec_init(&r);
	for (size_t off = 0; off < len; off += step) {
		struct pxy_cur in = pxy_cur_make(stream + off, off + step > len ? len - off : step);

		for (;;) {
			struct pxy_record rec;
			int ev = pxy_rec_next(&r, &in, &rec);

			assert_true(ev >= 0);
			if (ev == PXY_REC_MORE)
				break;
			if (ev == PXY_REC_HEADER)
				continue;
			assert_true(got < n);
			assert_int_equal(rec.h.len, sizes[got]);
			assert_int_equal(rec.buf_len, 5 + sizes[got]);
			for (size_t j = 0; j < sizes[got]; j++)
				assert_int_equal(rec.buf[5 + j], (uint8_t)(got * 7 + j));
			free(rec.buf);
			got++;
		}
		assert_int_equal(in.left, 0);
	}
	assert_int_equal(got, n);
	assert_true(pxy_rec_idle(&r));
	pxy_rec_free(&r);
}

static void test_reassembly_any_split(void **state)
{
	static const size_t sizes[] = { 0, 1, 100, 16384, 5, 18432, 0, 7 };
	size_t n = sizeof(sizes) / sizeof(sizes[0]);
	uint8_t *stream = malloc(64 * 1024);
	size_t len = build(stream, sizes, n);
	static const size_t steps[] = { 1, 2, 3, 4, 5, 6, 7, 13, 1000, 16389, 65536 };

	(void)state;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		check_split(stream, len, sizes, n, steps[i]);
	free(stream);
}

static void test_skip(void **state)
{
	static const size_t sizes[] = { 300, 4 };
	uint8_t stream[400];
	size_t len = build(stream, sizes, 2);
	struct pxy_rec_rd r;
	struct pxy_cur in = pxy_cur_make(stream, len);
	struct pxy_record rec;

	(void)state;
	pxy_rec_init(&r);
	assert_int_equal(pxy_rec_next(&r, &in, &rec), PXY_REC_HEADER);
	pxy_rec_skip(&r);
	assert_int_equal(pxy_rec_next(&r, &in, &rec), PXY_REC_RECORD);
	assert_null(rec.buf); /* counted, not copied */
	assert_int_equal(rec.h.len, 300);
	assert_int_equal(pxy_rec_next(&r, &in, &rec), PXY_REC_HEADER);
	assert_int_equal(pxy_rec_next(&r, &in, &rec), PXY_REC_RECORD);
	assert_non_null(rec.buf);
	free(rec.buf);
	assert_int_equal(r.records, 2);
	pxy_rec_free(&r);
}

static void test_bad_header_midstream(void **state)
{
	uint8_t stream[20] = { 23, 3, 3, 0, 2, 1, 2, 99, 3, 3, 0, 1, 0 };
	struct pxy_rec_rd r;
	struct pxy_cur in = pxy_cur_make(stream, 13);
	struct pxy_record rec;

	(void)state;
	pxy_rec_init(&r);
	assert_int_equal(pxy_rec_next(&r, &in, &rec), PXY_REC_HEADER);
	assert_int_equal(pxy_rec_next(&r, &in, &rec), PXY_REC_RECORD);
	free(rec.buf);
	assert_int_equal(pxy_rec_next(&r, &in, &rec), PXY_E_RECORD_TYPE);
	pxy_rec_free(&r);
}

static void test_alert_bytes(void **state)
{
	uint8_t a[7];
	static const uint8_t want[7] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28 };

	(void)state;
	pxy_rec_alert(a, 0x0303, 2, 40);
	assert_memory_equal(a, want, 7);
}

static void test_suite_table(void **state)
{
	char buf[8];
	const struct pxy_suite *s;

	(void)state;
	/* sorted (bsearch), every entry findable */
	for (unsigned id = 0; id < 0x10000; id++) {
		s = pxy_suite_find((uint16_t)id);
		if (s)
			assert_int_equal(s->id, id);
	}
	s = pxy_suite_find(0x009C);
	assert_non_null(s);
	assert_string_equal(s->name, "TLS_RSA_WITH_AES_128_GCM_SHA256");
	assert_true(pxy_suite_decryptable(s, PXY_TLS12));
	assert_false(pxy_suite_decryptable(s, PXY_TLS11));
	assert_false(pxy_suite_decryptable(pxy_suite_find(0xC02F), PXY_TLS12)); /* ECDHE */
	assert_true(pxy_suite_decryptable(pxy_suite_find(0x000A), PXY_TLS12));  /* 3DES */
	assert_false(pxy_suite_decryptable(pxy_suite_find(0xC09C), PXY_TLS10)); /* CCM needs TLS 1.2 */
	assert_true(pxy_suite_decryptable(pxy_suite_find(0x0041), PXY_TLS10));  /* Camellia-CBC does not */
	assert_string_equal(pxy_suite_name(0xFAFA, buf), "0xFAFA");
	assert_null(pxy_suite_find(0xFAFA));
	{
		/* every RSA key-exchange suite of the table (RC4 and SEED need OpenSSL's legacy provider) */
		static const uint16_t decryptable[] = { 0x0001, 0x0002, 0x0004, 0x0005, 0x000A, 0x002F, 0x0035,
							0x003B, 0x003C, 0x003D, 0x0041, 0x0084, 0x0096, 0x009C,
							0x009D, 0x00BA, 0x00C0, 0xC03C, 0xC03D, 0xC050, 0xC051,
							0xC07A, 0xC07B, 0xC09C, 0xC09D, 0xC0A0, 0xC0A1 };
		unsigned n = 0, want = 0;

		for (unsigned id = 0; id < 0x10000; id++)
			n += (unsigned)pxy_suite_decryptable(pxy_suite_find((uint16_t)id), PXY_TLS12);
		for (size_t i = 0; i < sizeof(decryptable) / sizeof(decryptable[0]); i++) {
			const struct pxy_suite *d = pxy_suite_find(decryptable[i]);

			assert_non_null(d);
			assert_int_equal(d->kx, PXY_KX_RSA);
			if (pxy_bulk_desc(d->bulk)->provider && !pxy_bulk_available(d->bulk, NULL))
				continue;
			want++;
			if (!pxy_suite_decryptable(d, PXY_TLS12))
				fail_msg("%s is not decryptable", d->name);
		}
		assert_int_equal(n, want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_validation),
		cmocka_unit_test(test_reassembly_any_split),
		cmocka_unit_test(test_skip),
		cmocka_unit_test(test_bad_header_midstream),
		cmocka_unit_test(test_alert_bytes),
		cmocka_unit_test(test_suite_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
