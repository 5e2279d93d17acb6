/*
 * Certificates as the tap sees them: pxy_cert_describe reads the serial and
 * subject of a DER leaf in place (no public-key decoding); it must say
 * exactly what OpenSSL's own parse says, for every shape of certificate, and
 * "?" (never a crash or an over-read) for anything that is not one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "tls/cert.h"

static EVP_PKEY *key;

/* What d2i_X509 and OpenSSL's printers make of der (the reference). */
static void reference(const uint8_t *der, size_t len, struct pxy_cert_info *ci)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	BIGNUM *bn;
	char *hex;

	assert_non_null(x);
	memset(ci, 0, sizeof(*ci));
	assert_non_null(EVP_Digest(der, len, ci->sha256, NULL, EVP_sha256(), NULL) ? ci : NULL);
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	hex = BN_bn2hex(bn);
	snprintf(ci->serial, sizeof(ci->serial), "%s", hex);
	X509_NAME_oneline(X509_get_subject_name(x), ci->subject, (int)sizeof(ci->subject));
	for (char *q = ci->subject; *q; q++)
		if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e || *q == ' ')
			*q = (*q == ' ') ? '_' : '?';
	OPENSSL_free(hex);
	BN_free(bn);
	X509_free(x);
}

/* A certificate: version (0 = v1, no version field), serial (hex, "-" prefix negative), subject entries. */
static size_t make_cert(uint8_t **der, long version, const char *serial, const char *const *names, int n_names)
{
	X509 *x = X509_new();
	X509_NAME *nm = X509_NAME_new();
	BIGNUM *bn = NULL;
	int len;

	assert_int_equal(X509_set_version(x, version), 1);
	assert_true(BN_hex2bn(&bn, serial) > 0);
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	for (int i = 0; i < n_names; i += 2)
		assert_int_equal(X509_NAME_add_entry_by_txt(nm, names[i], MBSTRING_UTF8, (const unsigned char *)names[i + 1],
							   -1, -1, 0),
				 1);
	assert_int_equal(X509_set_subject_name(x, nm), 1);
	assert_int_equal(X509_set_issuer_name(x, nm), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	*der = NULL;
	len = i2d_X509(x, der);
	assert_true(len > 0);
	X509_NAME_free(nm);
	BN_free(bn);
	X509_free(x);
	return (size_t)len;
}

static void check_same(const uint8_t *der, size_t len)
{
	struct pxy_cert_info want, got;
	uint8_t sha[32];

	reference(der, len, &want);
	pxy_cert_describe(der, len, &got);
	assert_memory_equal(got.sha256, want.sha256, 32);
	assert_string_equal(got.serial, want.serial);
	assert_string_equal(got.subject, want.subject);
	pxy_cert_sha256(der, len, sha);
	assert_memory_equal(sha, want.sha256, 32);
}

static void test_describe_matches_openssl(void **state)
{
	static const char *const plain[] = { "CN", "www.example.com" };
	static const char *const many[] = { "C", "DE", "O", "Example GmbH", "OU", "Ops", "CN", "a b\tc.example" };
	static const char *const utf8[] = { "CN", "\xc3\xa9t\xc3\xa9.example", "O", "caf\xc3\xa9" };
	uint8_t *der;
	size_t len;

	(void)state;
	len = make_cert(&der, 2, "01", plain, 2);
	check_same(der, len);
	OPENSSL_free(der);
	/* a 20-byte serial, and one whose first bit needs a leading zero */
	len = make_cert(&der, 2, "7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", many, 8);
	check_same(der, len);
	OPENSSL_free(der);
	len = make_cert(&der, 2, "80", utf8, 4);
	check_same(der, len);
	OPENSSL_free(der);
	/* v1: no [0] version field; a negative serial */
	len = make_cert(&der, 0, "-1234", plain, 2);
	check_same(der, len);
	OPENSSL_free(der);
	/* an empty subject */
	len = make_cert(&der, 2, "42", NULL, 0);
	check_same(der, len);
	OPENSSL_free(der);
}

static void test_describe_refuses_what_is_not_a_certificate(void **state)
{
	static const char *const plain[] = { "CN", "x.example" };
	struct pxy_cert_info ci;
	uint8_t *der, junk[300];
	size_t len;

	(void)state;
	len = make_cert(&der, 2, "05", plain, 2);
	/* every prefix: a fingerprint of what was given, and "?" where the fields are cut off */
	for (size_t n = 0; n < len; n++) {
		uint8_t *cut = malloc(n ? n : 1);

		memcpy(cut, der, n);
		pxy_cert_describe(cut, n, &ci);
		assert_true(strlen(ci.serial) > 0 && strlen(ci.subject) > 0);
		free(cut);
	}
	pxy_cert_describe(der, 3, &ci);
	assert_string_equal(ci.serial, "?");
	assert_string_equal(ci.subject, "?");
	/* every single-byte change of the header fields: no crash, no over-read (ASan) */
	for (size_t i = 0; i < 40 && i < len; i++)
		for (int v = 0; v < 256; v += 17) {
			uint8_t *m = malloc(len);

			memcpy(m, der, len);
			m[i] = (uint8_t)v;
			pxy_cert_describe(m, len, &ci);
			free(m);
		}
	assert_int_equal(RAND_bytes(junk, sizeof(junk)), 1);
	pxy_cert_describe(junk, sizeof(junk), &ci);
	OPENSSL_free(der);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_describe_matches_openssl),
		cmocka_unit_test(test_describe_refuses_what_is_not_a_certificate),
	};
	EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	int r;

	if (!kc || EVP_PKEY_keygen_init(kc) <= 0 || EVP_PKEY_CTX_set_group_name(kc, "P-256") <= 0 ||
	    EVP_PKEY_keygen(kc, &key) <= 0)
		return 1;
	EVP_PKEY_CTX_free(kc);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	EVP_PKEY_free(key);
	return r;
}
