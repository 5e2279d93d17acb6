#include "tls/keys.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "util/ct.h"

size_t pxy_prf_hash_len(uint8_t prf)
{
	return prf == PXY_PRF_SHA384 ? 48 : 32;
}

static const char *prf_digest(uint8_t prf)
{
	/* OpenSSL's TLS1-PRF with MD5-SHA1 is the TLS 1.0/1.1 PRF: P_MD5 xor P_SHA1 over the secret's halves */
	return prf == PXY_PRF_SHA384 ? "SHA384" : prf == PXY_PRF_MD5_SHA1 ? "MD5-SHA1" : "SHA256";
}

/* One derivation by an OpenSSL KDF (TLS1-PRF, HKDF) with these parameters. */
static int kdf_derive(const char *name, const OSSL_PARAM *params, uint8_t *out, size_t out_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, name, NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	int ret = ctx && EVP_KDF_derive(ctx, out, out_len, params) > 0 ? PXY_OK : PXY_E_CRYPTO_LIB;

	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return ret;
}

int pxy_prf(uint8_t prf, const uint8_t *secret, size_t secret_len, const char *label,
	    const uint8_t *seed1, size_t seed1_len, const uint8_t *seed2, size_t seed2_len,
	    uint8_t *out, size_t out_len)
{
	OSSL_PARAM params[6], *p = params;

	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)prf_digest(prf), 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)secret, secret_len);
	/* the TLS1-PRF concatenates repeated seed parameters: label || seed1 || seed2 */
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)label, strlen(label));
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)seed1, seed1_len);
	if (seed2_len)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)seed2, seed2_len);
	*p = OSSL_PARAM_construct_end();
	return kdf_derive(OSSL_KDF_NAME_TLS1_PRF, params, out, out_len);
}

int pxy_transcript_hash(uint8_t prf, const uint8_t *msgs, size_t len, uint8_t *out, size_t *out_len)
{
	unsigned int n = 0;
	/* TLS 1.0/1.1 Finished and EMS session hash: MD5(msgs) || SHA-1(msgs) */
	const EVP_MD *md = prf == PXY_PRF_SHA384	? EVP_sha384()
			   : prf == PXY_PRF_MD5_SHA1 ? EVP_md5_sha1()
						     : EVP_sha256();

	if (!EVP_Digest(msgs, len, out, &n, md, NULL))
		return PXY_E_CRYPTO_LIB;
	*out_len = n;
	return PXY_OK;
}

int pxy_keys_master(uint8_t prf, const uint8_t pms[PXY_PMS_LEN], const uint8_t client_random[32],
		    const uint8_t server_random[32], uint8_t ms[PXY_MASTER_LEN])
{
	/* RFC 5246 §8.1: PRF(pre_master_secret, "master secret", ClientHello.random + ServerHello.random) */
	return pxy_prf(prf, pms, PXY_PMS_LEN, "master secret", client_random, 32, server_random, 32, ms,
		       PXY_MASTER_LEN);
}

int pxy_keys_master_ems(uint8_t prf, const uint8_t pms[PXY_PMS_LEN], const uint8_t *session_hash,
			size_t hash_len, uint8_t ms[PXY_MASTER_LEN])
{
	/* RFC 7627 §4: PRF(pre_master_secret, "extended master secret", session_hash) */
	return pxy_prf(prf, pms, PXY_PMS_LEN, "extended master secret", session_hash, hash_len, NULL, 0, ms,
		       PXY_MASTER_LEN);
}

static void fill_dir(struct pxy_traffic_keys *k, const struct pxy_suite *s, uint16_t version, int etm)
{
	const struct pxy_bulk_desc *b = pxy_bulk_desc(s->bulk);

	memset(k, 0, sizeof(*k));
	k->bulk = s->bulk;
	k->mac = s->mac;
	k->version = version;
	k->key_len = b->key_len;
	k->mac_key_len = (uint8_t)pxy_mac_len(s->mac);
	switch (b->kind) {
	case PXY_BK_AEAD:
		k->mac_len = b->tag_len;
		k->iv_len = b->fixed_iv; /* RFC 5288 §3, RFC 6655 §3: the implicit salt */
		break;
	case PXY_BK_CBC:
		k->mac_len = k->mac_key_len;
		/* RFC 5246 §6.3: the key block has IVs only for TLS 1.0's implicit CBC IV */
		k->iv_len = version <= PXY_TLS10 ? b->fixed_iv : 0;
		k->etm = (uint8_t)(etm != 0); /* RFC 7366: block ciphers only */
		break;
	default: /* stream, NULL: MAC-then-encrypt, no IV */
		k->mac_len = k->mac_key_len;
		break;
	}
}

int pxy_keys_traffic(const struct pxy_suite *s, uint16_t version, int etm, const uint8_t ms[PXY_MASTER_LEN],
		     const uint8_t client_random[32], const uint8_t server_random[32],
		     struct pxy_traffic_keys *cw, struct pxy_traffic_keys *sw)
{
	uint8_t block[2 * (48 + 32 + 16)];
	size_t off = 0, need;
	int r;

	if (!pxy_bulk_desc(s->bulk))
		return PXY_E_STATE;
	fill_dir(cw, s, version, etm);
	fill_dir(sw, s, version, etm);
	need = 2u * ((size_t)cw->mac_key_len + cw->key_len + cw->iv_len);
	/* RFC 5246 §6.3: PRF(master_secret, "key expansion", server_random + client_random) */
	r = pxy_prf(PXY_PRF_FOR(s->prf, version), ms, PXY_MASTER_LEN, "key expansion", server_random, 32,
		    client_random, 32, block, need);
	if (r < 0)
		goto out;
	memcpy(cw->mac_key, block + off, cw->mac_key_len), off += cw->mac_key_len;
	memcpy(sw->mac_key, block + off, sw->mac_key_len), off += sw->mac_key_len;
	memcpy(cw->key, block + off, cw->key_len), off += cw->key_len;
	memcpy(sw->key, block + off, sw->key_len), off += sw->key_len;
	memcpy(cw->iv, block + off, cw->iv_len), off += cw->iv_len;
	memcpy(sw->iv, block + off, sw->iv_len);
out:
	pxy_wipe(block, sizeof(block));
	return r;
}

int pxy_keys_finished(uint8_t prf, const uint8_t ms[PXY_MASTER_LEN], int is_client,
		      const uint8_t *transcript_hash, size_t hash_len, uint8_t out[12])
{
	return pxy_prf(prf, ms, PXY_MASTER_LEN, is_client ? "client finished" : "server finished",
		       transcript_hash, hash_len, NULL, 0, out, 12);
}

/* ---- TLS 1.3 (RFC 8446 §7) --------------------------------------------------------- */

int pxy_tls13_expand_label(uint8_t prf, const uint8_t *secret, size_t secret_len, const char *label,
			   const uint8_t *context, size_t context_len, uint8_t *out, size_t out_len)
{
	/* HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255> */
	uint8_t info[2 + 1 + 255 + 1 + 255];
	size_t ll = strlen(label), n = 0;
	OSSL_PARAM params[5], *p = params;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;

	if (6 + ll > 255 || context_len > 255 || out_len > 0xffff)
		return PXY_E_STATE;
	info[n++] = (uint8_t)(out_len >> 8);
	info[n++] = (uint8_t)out_len;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6), n += 6;
	memcpy(info + n, label, ll), n += ll;
	info[n++] = (uint8_t)context_len;
	if (context_len)
		memcpy(info + n, context, context_len), n += context_len;
	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)prf_digest(prf), 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n);
	*p = OSSL_PARAM_construct_end();
	return kdf_derive(OSSL_KDF_NAME_HKDF, params, out, out_len);
}

int pxy_tls13_traffic_keys(const struct pxy_suite *s, const uint8_t *secret, size_t secret_len,
			   struct pxy_traffic_keys *k)
{
	const struct pxy_bulk_desc *b = pxy_bulk_desc(s->bulk);

	if (!b || b->kind != PXY_BK_AEAD || secret_len != pxy_prf_hash_len(s->prf))
		return PXY_E_STATE;
	memset(k, 0, sizeof(*k));
	k->bulk = s->bulk;
	k->mac = s->mac;
	k->version = PXY_TLS13;
	k->key_len = b->key_len;
	k->mac_len = b->tag_len;
	k->iv_len = 12; /* RFC 8446 §5.3: the per-record nonce is this IV XOR the sequence number */
	/* RFC 8446 §7.3: [sender]_write_key = HKDF-Expand-Label(Secret, "key", "", key_length) */
	PXY_TRY(pxy_tls13_expand_label(s->prf, secret, secret_len, "key", NULL, 0, k->key, b->key_len));
	return pxy_tls13_expand_label(s->prf, secret, secret_len, "iv", NULL, 0, k->iv, 12);
}

int pxy_tls13_finished(uint8_t prf, const uint8_t *secret, size_t secret_len, const uint8_t *transcript_hash,
		       uint8_t *out)
{
	uint8_t fkey[PXY_MAX_HASH];
	size_t hl = pxy_prf_hash_len(prf);
	unsigned int n = 0;
	int r;

	/* RFC 8446 §4.4.4: HMAC(HKDF-Expand-Label(BaseKey, "finished", "", Hash.length), Transcript-Hash) */
	r = pxy_tls13_expand_label(prf, secret, secret_len, "finished", NULL, 0, fkey, hl);
	if (r == PXY_OK && !HMAC(prf == PXY_PRF_SHA384 ? EVP_sha384() : EVP_sha256(), fkey, (int)hl,
				 transcript_hash, hl, out, &n))
		r = PXY_E_CRYPTO_LIB;
	pxy_wipe(fkey, sizeof(fkey));
	return r;
}

int pxy_tls13_next_secret(uint8_t prf, uint8_t *secret, size_t secret_len)
{
	uint8_t next[PXY_MAX_HASH];
	int r;

	/* RFC 8446 §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(_N, "traffic upd", "", Hash.length) */
	r = pxy_tls13_expand_label(prf, secret, secret_len, "traffic upd", NULL, 0, next, secret_len);
	if (r == PXY_OK)
		memcpy(secret, next, secret_len);
	pxy_wipe(next, sizeof(next));
	return r;
}
