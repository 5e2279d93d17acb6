/* Output formats a user and Wireshark read: key log, file names, the connection and reject lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include <json-c/json.h>

#include "sink/sinks.h"

static void test_keylog(void **state)
{
	uint8_t cr[32], ms[48];
	char line[256];
	size_t n;

	(void)state;
	for (int i = 0; i < 32; i++)
		cr[i] = (uint8_t)i;
	for (int i = 0; i < 48; i++)
		ms[i] = (uint8_t)(0xf0 + (i & 15));
	n = pxy_keylog_line(line, sizeof(line), cr, ms);
	assert_int_equal(n, strlen("CLIENT_RANDOM ") + 64 + 1 + 96 + 1);
	assert_int_equal(strncmp(line, "CLIENT_RANDOM 000102030405", 26), 0);
	assert_non_null(strstr(line, " f0f1f2f3"));
	assert_int_equal(line[n - 1], '\n');
	assert_int_equal(pxy_keylog_line(line, 100, cr, ms), 0); /* never a cut line */
}

static void test_paths_and_addrs(void **state)
{
	char p[64];
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(443) };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(8443) };

	(void)state;
	assert_int_equal(pxy_plaintext_path(p, sizeof(p), "/var/x", "12-3", PXY_C2S), 0);
	assert_string_equal(p, "/var/x/12-3.c2s");
	assert_int_equal(pxy_plaintext_path(p, sizeof(p), "/var/x", "12-3", PXY_S2C), 0);
	assert_string_equal(p, "/var/x/12-3.s2c");
	assert_int_equal(pxy_plaintext_path(p, 8, "/var/x", "12-3", PXY_S2C), -1);
	inet_pton(AF_INET, "10.1.2.3", &s4.sin_addr);
	pxy_addr_str((struct sockaddr *)&s4, p, sizeof(p));
	assert_string_equal(p, "10.1.2.3:443");
	inet_pton(AF_INET6, "::1", &s6.sin6_addr);
	pxy_addr_str((struct sockaddr *)&s6, p, sizeof(p));
	assert_string_equal(p, "[::1]:8443");
}

/* A decrypted TLS 1.2 connection (www.example.com, 100/200 bytes forwarded, 10/20 decrypted). */
static void sample_conn(struct pxy_tap_info *t, struct pxy_conn_summary *s, uint16_t suite)
{
	memset(t, 0, sizeof(*t));
	strcpy(t->sni, "www.example.com");
	t->version = 0x0303;
	t->suite = suite;
	t->has_suite = 1;
	t->ems = 1;
	t->decrypted[0] = 10;
	t->decrypted[1] = 20;
	memset(s, 0, sizeof(*s));
	s->id = "7-1";
	s->client = "127.0.0.1:5";
	s->server = "127.0.0.1:6";
	s->tap = t;
	s->outcome = PXY_O_DECRYPTED;
	s->reason = PXY_R_NONE;
	s->bytes[0] = 100;
	s->bytes[1] = 200;
	s->close = "fin";
}

static void test_conn_line(void **state)
{
	struct pxy_tap_info t;
	struct pxy_conn_summary s;
	struct pxy_cert_info exp;
	char line[1024];

	(void)state;
	sample_conn(&t, &s, 0x003c);
	s.duration_us = 1234567;
	pxy_connlog_format(line, sizeof(line), &s);
	assert_string_equal(line, "conn id=7-1 client=127.0.0.1:5 server=127.0.0.1:6 sni=www.example.com version=TLS1.2 "
				  "suite=TLS_RSA_WITH_AES_128_CBC_SHA256 ems=yes etm=no resumed=no verdict=decrypted reason=- "
				  "bytes_c2s=100 bytes_s2c=200 decrypted_c2s=10 decrypted_s2c=20 client_cert=no close=fin "
				  "duration_ms=1234.567");
	t.dropped[1] = 3;
	pxy_connlog_format(line, sizeof(line), &s);
	assert_non_null(strstr(line, " dropped_c2s=0 dropped_s2c=3"));

	/* a rejection: reason, suite and both certificates */
	memset(&exp, 0, sizeof(exp));
	strcpy(exp.serial, "01AB");
	exp.sha256[0] = 0xAA;
	t.reason = PXY_R_CERT_MISMATCH;
	t.has_received_cert = 1;
	strcpy(t.received.serial, "77");
	t.received.sha256[31] = 0x01;
	pxy_rejectlog_format(line, sizeof(line), "7-2", &t, &exp);
	assert_non_null(strstr(line, "reject id=7-2 reason=cert-mismatch alert=handshake_failure(40)"));
	assert_non_null(strstr(line, "suite=TLS_RSA_WITH_AES_128_CBC_SHA256"));
	assert_non_null(strstr(line, "expected_serial=01AB expected_sha256=AA:00:"));
	assert_non_null(strstr(line, "received_serial=77 received_sha256=00:"));
	assert_non_null(strstr(line, ":00:01"));
	/* every reason has a name */
	for (int r = 0; r < PXY_R__COUNT; r++)
		assert_string_not_equal(pxy_reason_name((enum pxy_reason)r), "?");
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && v ? json_object_get_string(v) : NULL;
}

static int jnull(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && v == NULL;
}

static void test_connlog_json(void **state)
{
	struct pxy_tap_info t;
	struct pxy_conn_summary s;
	char line[2048];
	json_object *o, *cc;
	size_t n;

	(void)state;
	sample_conn(&t, &s, 0x002f); /* TLS_RSA_WITH_AES_128_CBC_SHA */
	t.etm = 1;
	t.resumed = 1;
	t.resumed_ticket = 1;
	t.client_cert = 1;
	strcpy(t.client.subject, "/CN=a \"quoted\" \\ name");
	strcpy(t.client.serial, "1A2B");
	t.client.sha256[0] = 0xC7;
	t.dropped[1] = 2;
	s.client = "[::1]:5";
	s.start_unix_us = 1795046400000000ull + 123456; /* 2026-11-19T00:00:00.123456Z */
	s.duration_us = 1500000;
	s.engine = "emu";
	n = pxy_connlog_json(line, sizeof(line), &s);
	assert_true(n > 0);
	assert_int_equal(n, strlen(line));
	assert_int_equal(line[n - 1], '\n');
	assert_null(memchr(line, '\n', n - 1)); /* one line */
	o = json_tokener_parse(line);
	assert_non_null(o);
	assert_string_equal(jstr(o, "start"), "2026-11-19T00:00:00.123456Z");
	assert_string_equal(jstr(o, "end"), "2026-11-19T00:00:01.623456Z");
	assert_non_null(strstr(line, "\"duration_ms\":1500.000,"));
	assert_string_equal(jstr(o, "id"), "7-1");
	assert_string_equal(jstr(o, "client"), "[::1]:5");
	assert_string_equal(jstr(o, "sni"), "www.example.com");
	assert_string_equal(jstr(o, "version"), "TLS1.2");
	assert_string_equal(jstr(o, "suite"), "TLS_RSA_WITH_AES_128_CBC_SHA");
	assert_string_equal(jstr(o, "ems"), "true");
	assert_string_equal(jstr(o, "etm"), "true");
	assert_string_equal(jstr(o, "resumed"), "ticket");
	assert_string_equal(jstr(o, "verdict"), "decrypted");
	assert_true(jnull(o, "reason"));
	assert_true(jnull(o, "server_cert"));
	assert_string_equal(jstr(o, "bytes_s2c"), "200");
	assert_string_equal(jstr(o, "decrypted_c2s"), "10");
	assert_string_equal(jstr(o, "dropped_s2c"), "2");
	assert_string_equal(jstr(o, "close"), "fin");
	assert_string_equal(jstr(o, "engine"), "emu");
	assert_true(json_object_object_get_ex(o, "client_cert", &cc));
	assert_string_equal(jstr(cc, "subject"), "/CN=a \"quoted\" \\ name"); /* escaped, and back */
	assert_string_equal(jstr(cc, "serial"), "1A2B");
	assert_true(!strncmp(jstr(cc, "sha256"), "C7:00:", 6));
	json_object_put(o);

	/* AEAD: etm means nothing; session-ID resumption; a reason */
	t.suite = 0x009c;
	t.resumed_ticket = 0;
	s.outcome = PXY_O_NOT_DECRYPTED;
	s.reason = PXY_R_RESUMPTION_UNKNOWN;
	assert_true(pxy_connlog_json(line, sizeof(line), &s) > 0);
	o = json_tokener_parse(line);
	assert_true(jnull(o, "etm"));
	assert_string_equal(jstr(o, "resumed"), "session-id");
	assert_string_equal(jstr(o, "reason"), "resumption-unknown");
	json_object_put(o);

	/* no TLS seen at all */
	s.tap = NULL;
	s.outcome = PXY_O_NOT_DECRYPTED;
	s.reason = PXY_R_BACKEND_UNREACHABLE;
	assert_true(pxy_connlog_json(line, sizeof(line), &s) > 0);
	o = json_tokener_parse(line);
	assert_true(jnull(o, "sni") && jnull(o, "version") && jnull(o, "suite") && jnull(o, "ems"));
	assert_string_equal(jstr(o, "resumed"), "no");
	assert_string_equal(jstr(o, "decrypted_c2s"), "0");
	json_object_put(o);

	/* never a cut line */
	assert_int_equal(pxy_connlog_json(line, 64, &s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keylog),
		cmocka_unit_test(test_paths_and_addrs),
		cmocka_unit_test(test_connlog_json),
		cmocka_unit_test(test_conn_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
