#include "tls/cert.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/cursor.h"
#include "util/ct.h"
#include "util/util.h"

/* msg, then OpenSSL's reason for the failure when it has one */
static void set_err(char *err, size_t n, const char *path, const char *msg)
{
	unsigned long e = ERR_peek_last_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	if (why)
		snprintf(err, n, "%s: %s (%s)", path, msg, why);
	else
		snprintf(err, n, "%s: %s", path, msg);
}

/* SHA-256 through one digest fetched once for the process (an implicit fetch per call takes locks). */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void pxy_cert_sha256(const uint8_t *der, size_t len, uint8_t out[32])
{
	pthread_once(&sha256_once, sha256_fetch);
	if (!sha256_md || !EVP_Digest(der, len, out, NULL, sha256_md, NULL))
		memset(out, 0, 32);
}

/* The serial number as OpenSSL prints it (upper-case hex), "?" when unparseable. */
static void serial_hex(const ASN1_INTEGER *sn, char *out, size_t n)
{
	BIGNUM *bn = NULL;
	char *hex = NULL;

	if (sn && (bn = ASN1_INTEGER_to_BN(sn, NULL)) && (hex = BN_bn2hex(bn)))
		snprintf(out, n, "%s", hex);
	else
		snprintf(out, n, "?");
	OPENSSL_free(hex);
	BN_free(bn);
}

/* The subject on one line for log lines: printable, no spaces. */
static void subject_line(const X509_NAME *name, char *out, size_t n)
{
	if (!name || !X509_NAME_oneline(name, out, (int)n))
		snprintf(out, n, "?");
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || *p == ' ')
			*p = (*p == ' ') ? '_' : '?';
}

static void fill_info(X509 *x, const uint8_t *der, size_t der_len, struct pxy_cert_info *ci)
{
	memset(ci, 0, sizeof(*ci));
	pxy_cert_sha256(der, der_len, ci->sha256);
	serial_hex(x ? X509_get0_serialNumber(x) : NULL, ci->serial, sizeof(ci->serial));
	subject_line(x ? X509_get_subject_name(x) : NULL, ci->subject, sizeof(ci->subject));
}

/*
 * One DER TLV (X.690 §8.1): its tag, and its content as a sub-cursor; *tlv and
 * *tlv_len cover the whole element. Single-byte tags, definite lengths of up
 * to three bytes (a certificate is under 16 MiB).
 */
static int der_tlv(struct pxy_cur *c, uint8_t *tag, struct pxy_cur *content, const uint8_t **tlv, size_t *tlv_len)
{
	struct pxy_cur save = *c;
	uint8_t b;
	size_t len = 0;

	*tlv = c->p;
	if (pxy_cur_u8(c, tag) < 0 || (*tag & 0x1f) == 0x1f || pxy_cur_u8(c, &b) < 0)
		goto bad;
	if (b & 0x80) {
		unsigned nb = b & 0x7f;

		if (nb == 0 || nb > 3)
			goto bad;
		for (unsigned i = 0; i < nb; i++) {
			if (pxy_cur_u8(c, &b) < 0)
				goto bad;
			len = len << 8 | b;
		}
	} else {
		len = b;
	}
	if (pxy_cur_sub(c, len, content) < 0)
		goto bad;
	*tlv_len = (size_t)(c->p - *tlv);
	return PXY_OK;
bad:
	*c = save;
	return PXY_E_DECODE;
}

/*
 * Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
 * serialNumber INTEGER, signature, issuer, validity, subject Name, ... }, ... }
 * (RFC 5280 §4.1): the serial number and the subject, read in place. OpenSSL's
 * d2i_X509 would also decode the public key through its provider decoders,
 * which costs more than the rest of a handshake's parsing together.
 */
static int tbs_fields(const uint8_t *der, size_t len, const uint8_t **serial, size_t *serial_len,
		      const uint8_t **subject, size_t *subject_len)
{
	struct pxy_cur c = pxy_cur_make(der, len), cert, tbs, skip;
	const uint8_t *tlv;
	size_t tlv_len;
	uint8_t tag;

	PXY_TRY(der_tlv(&c, &tag, &cert, &tlv, &tlv_len));
	if (tag != 0x30)
		return PXY_E_DECODE;
	PXY_TRY(der_tlv(&cert, &tag, &tbs, &tlv, &tlv_len));
	if (tag != 0x30)
		return PXY_E_DECODE;
	PXY_TRY(der_tlv(&tbs, &tag, &skip, &tlv, &tlv_len));
	if (tag == 0xa0) /* the explicit version */
		PXY_TRY(der_tlv(&tbs, &tag, &skip, &tlv, &tlv_len));
	if (tag != 0x02)
		return PXY_E_DECODE;
	*serial = tlv;
	*serial_len = tlv_len;
	for (int i = 0; i < 3; i++) { /* signature, issuer, validity */
		PXY_TRY(der_tlv(&tbs, &tag, &skip, &tlv, &tlv_len));
		if (tag != 0x30)
			return PXY_E_DECODE;
	}
	PXY_TRY(der_tlv(&tbs, &tag, &skip, &tlv, &tlv_len));
	if (tag != 0x30)
		return PXY_E_DECODE;
	*subject = tlv;
	*subject_len = tlv_len;
	return PXY_OK;
}

void pxy_cert_describe(const uint8_t *der, size_t len, struct pxy_cert_info *out)
{
	const uint8_t *serial = NULL, *subject = NULL, *p;
	size_t serial_len = 0, subject_len = 0;
	ASN1_INTEGER *sn = NULL;
	X509_NAME *name = NULL;

	memset(out, 0, sizeof(*out));
	pxy_cert_sha256(der, len, out->sha256);
	if (tbs_fields(der, len, &serial, &serial_len, &subject, &subject_len) == PXY_OK) {
		p = serial;
		sn = d2i_ASN1_INTEGER(NULL, &p, (long)serial_len);
		p = subject;
		name = d2i_X509_NAME(NULL, &p, (long)subject_len);
	}
	serial_hex(sn, out->serial, sizeof(out->serial));
	subject_line(name, out->subject, sizeof(out->subject));
	ASN1_INTEGER_free(sn);
	X509_NAME_free(name);
	ERR_clear_error();
}

void pxy_cert_fp_str(const struct pxy_cert_info *ci, char out[96])
{
	pxy_hex_colon(out, ci->sha256, 32);
}

/*
 * The PEM private key, read with read(2) into OpenSSL's secure allocator and
 * parsed from there: no stdio buffer keeps a copy after the file is closed.
 * NULL with err empty: not a PEM private key; with err set: unreadable.
 */
static EVP_PKEY *read_private_key(const char *path, char *err, size_t err_len)
{
	enum { KEY_FILE_MAX = 64 * 1024 };
	uint8_t *buf = OPENSSL_secure_malloc(KEY_FILE_MAX);
	EVP_PKEY *pk = NULL;
	size_t len = 0;
	ssize_t r = 0;
	BIO *bio;
	int fd;

	err[0] = '\0';
	if (!buf) {
		snprintf(err, err_len, "out of memory reading %s", path);
		return NULL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, err_len, "cannot read private key %s: %s", path, strerror(errno));
		OPENSSL_secure_free(buf);
		return NULL;
	}
	while (len < KEY_FILE_MAX && (r = read(fd, buf + len, KEY_FILE_MAX - len)) > 0)
		len += (size_t)r;
	close(fd);
	if (r < 0 || len == KEY_FILE_MAX) {
		snprintf(err, err_len, "cannot read private key %s: %s", path,
			 r < 0 ? strerror(errno) : "larger than 64 KiB");
	} else if ((bio = BIO_new_mem_buf(buf, (int)len)) != NULL) {
		pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	OPENSSL_secure_clear_free(buf, KEY_FILE_MAX);
	return pk;
}

int pxy_identity_load(struct pxy_identity *id, const char *cert_path, const char *key_path, char *err,
		      size_t err_len)
{
	FILE *fp = NULL;
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	unsigned char *der = NULL;
	int der_len, ret = PXY_E_FILE;

	memset(id, 0, sizeof(*id));
	if (!cert_path || !key_path) {
		snprintf(err, err_len, "both --cert and --key are required");
		return PXY_E_CONFIG;
	}
	fp = fopen(cert_path, "re");
	if (!fp) {
		snprintf(err, err_len, "cannot read certificate %s: %s", cert_path, strerror(errno));
		goto out;
	}
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	fp = NULL;
	if (!x) {
		set_err(err, err_len, cert_path, "not a PEM certificate");
		goto out;
	}
	pk = read_private_key(key_path, err, err_len);
	if (!pk && err[0])
		goto out;
	if (!pk) {
		set_err(err, err_len, key_path, "not a PEM private key (encrypted keys are not supported)");
		goto out;
	}
	ret = PXY_E_CONFIG;
	/* a key that is not RSA (ECDSA, EdDSA) decrypts nothing itself: its certificate is what servers
	 * whose sessions' secrets are forwarded present (the caller refuses it without a key source) */
	id->rsa = EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA;
	snprintf(id->key_type, sizeof(id->key_type), "%s",
		 id->rsa ? "RSA" : EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "?");
	if (id->rsa &&
	    (EVP_PKEY_get_bits(pk) < PXY_RSA_MIN_BITS || EVP_PKEY_get_bits(pk) > PXY_RSA_MAX_BYTES * 8)) {
		snprintf(err, err_len, "%s: RSA-%d is outside the supported range %d..%d bits", key_path,
			 EVP_PKEY_get_bits(pk), PXY_RSA_MIN_BITS, PXY_RSA_MAX_BYTES * 8);
		goto out;
	}
	if (EVP_PKEY_eq(X509_get0_pubkey(x), pk) != 1) {
		snprintf(err, err_len, "%s is not the private key of the certificate %s", key_path, cert_path);
		ERR_clear_error();
		goto out;
	}
	der_len = i2d_X509(x, &der);
	if (der_len <= 0) {
		set_err(err, err_len, cert_path, "cannot encode the certificate");
		goto out;
	}
	id->x509 = x;
	id->pkey = pk;
	id->der = der;
	id->der_len = (size_t)der_len;
	id->bits = (uint32_t)EVP_PKEY_get_bits(pk);
	fill_info(x, der, (size_t)der_len, &id->info);
	return PXY_OK;
out:
	if (fp)
		fclose(fp);
	X509_free(x);
	EVP_PKEY_free(pk);
	ERR_clear_error();
	return ret;
}

void pxy_identity_free(struct pxy_identity *id)
{
	if (!id)
		return;
	X509_free(id->x509);
	EVP_PKEY_free(id->pkey);
	OPENSSL_free(id->der);
	memset(id, 0, sizeof(*id));
}

static int export_bn(EVP_PKEY *pk, const char *name, struct pxy_bn *out)
{
	BIGNUM *bn = NULL;
	uint8_t *buf;
	int n;

	if (!EVP_PKEY_get_bn_param(pk, name, &bn))
		return PXY_E_KEY;
	n = BN_num_bytes(bn);
	buf = OPENSSL_secure_malloc(n > 0 ? (size_t)n : 1);
	if (!buf) {
		BN_clear_free(bn);
		return PXY_E_NOMEM;
	}
	BN_bn2bin(bn, buf);
	BN_clear_free(bn);
	out->p = buf;
	out->len = (size_t)n;
	return PXY_OK;
}

int pxy_identity_rsa_priv(const struct pxy_identity *id, struct pxy_rsa_priv *k)
{
	return pxy_rsa_priv_from_pkey(id->pkey, k);
}

int pxy_rsa_priv_from_pkey(const void *pkey, struct pxy_rsa_priv *k)
{
	EVP_PKEY *pk = (EVP_PKEY *)pkey;
	int r;

	memset(k, 0, sizeof(*k));
	k->bits = (uint32_t)EVP_PKEY_get_bits(pk);
	if ((r = export_bn(pk, OSSL_PKEY_PARAM_RSA_N, &k->n)) < 0 ||
	    (r = export_bn(pk, OSSL_PKEY_PARAM_RSA_E, &k->e)) < 0 ||
	    (r = export_bn(pk, OSSL_PKEY_PARAM_RSA_D, &k->d)) < 0 ||
	    (r = export_bn(pk, OSSL_PKEY_PARAM_RSA_FACTOR1, &k->p)) < 0 ||
	    (r = export_bn(pk, OSSL_PKEY_PARAM_RSA_FACTOR2, &k->q)) < 0 ||
	    (r = export_bn(pk, OSSL_PKEY_PARAM_RSA_EXPONENT1, &k->dp)) < 0 ||
	    (r = export_bn(pk, OSSL_PKEY_PARAM_RSA_EXPONENT2, &k->dq)) < 0 ||
	    (r = export_bn(pk, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, &k->qinv)) < 0) {
		pxy_rsa_priv_free(k);
		ERR_clear_error();
		return r;
	}
	return PXY_OK;
}

void pxy_rsa_priv_free(struct pxy_rsa_priv *k)
{
	struct pxy_bn *all[] = { &k->n, &k->e, &k->d, &k->p, &k->q, &k->dp, &k->dq, &k->qinv };

	for (size_t i = 0; i < PXY_ARRAY_LEN(all); i++) {
		if (all[i]->p)
			OPENSSL_secure_clear_free((void *)all[i]->p, all[i]->len ? all[i]->len : 1);
		all[i]->p = NULL;
		all[i]->len = 0;
	}
}

int pxy_identity_names_host(const struct pxy_identity *id, const char *host)
{
	if (!id || !id->x509 || !host || !*host)
		return 0;
	return X509_check_host(id->x509, host, strlen(host), 0, NULL) == 1;
}
