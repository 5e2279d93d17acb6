#include "tls/hs.h"

#include <stdlib.h>
#include <string.h>

#include "tls/suites.h"

/* ---- reassembly ---------------------------------------------------------- */

void pxy_hs_init(struct pxy_hs_rd *h, size_t max_msg)
{
	memset(h, 0, sizeof(*h));
	h->max_msg = max_msg;
}

void pxy_hs_free(struct pxy_hs_rd *h)
{
	free(h->buf);
	h->buf = NULL;
	h->len = h->cap = 0;
}

/* Reject a message as soon as its header announces more than we accept. */
static int check_front(const struct pxy_hs_rd *h)
{
	struct pxy_cur c = pxy_cur_make(h->buf, h->len);
	uint8_t type;
	uint32_t len;

	if (pxy_cur_u8(&c, &type) < 0 || pxy_cur_u24(&c, &len) < 0)
		return PXY_OK;
	return len > h->max_msg ? PXY_E_HS_TOO_LARGE : PXY_OK;
}

int pxy_hs_feed(struct pxy_hs_rd *h, const uint8_t *p, size_t n)
{
	if (n == 0)
		return PXY_OK;
	/* Everything buffered is at most one message plus the next's start. */
	if (h->len + n > h->max_msg + 2 * PXY_HS_HDR_LEN + PXY_TLS_MAX_PLAINTEXT)
		return PXY_E_HS_TOO_LARGE;
	if (h->len + n > h->cap) {
		size_t cap = h->cap ? h->cap : 1024;
		uint8_t *nb;

		while (cap < h->len + n)
			cap *= 2;
		nb = realloc(h->buf, cap);
		if (!nb)
			return PXY_E_NOMEM;
		h->buf = nb;
		h->cap = cap;
	}
	memcpy(h->buf + h->len, p, n);
	h->len += n;
	return check_front(h);
}

int pxy_hs_peek(struct pxy_hs_rd *h, struct pxy_hs_msg *m)
{
	struct pxy_cur c = pxy_cur_make(h->buf, h->len);
	uint8_t type;
	uint32_t len;

	if (pxy_cur_u8(&c, &type) < 0 || pxy_cur_u24(&c, &len) < 0)
		return 0;
	if (len > h->max_msg)
		return PXY_E_HS_TOO_LARGE;
	if (pxy_cur_sub(&c, len, &m->body) < 0)
		return 0;
	m->type = type;
	m->raw = h->buf;
	m->raw_len = PXY_HS_HDR_LEN + (size_t)len;
	return 1;
}

void pxy_hs_pop(struct pxy_hs_rd *h)
{
	struct pxy_hs_msg m;

	if (pxy_hs_peek(h, &m) != 1)
		return;
	memmove(h->buf, h->buf + m.raw_len, h->len - m.raw_len);
	h->len -= m.raw_len;
	if (h->len == 0 && h->cap > 64 * 1024) {
		/* do not keep a large certificate's buffer for the whole connection */
		free(h->buf);
		h->buf = NULL;
		h->cap = 0;
	}
}

int pxy_hs_empty(const struct pxy_hs_rd *h)
{
	return h->len == 0;
}

/* ---- extensions ---------------------------------------------------------- */

/* Which extension types a hello carried: one bit per 16-bit type, so that any number of
 * extensions the block can hold (up to 16,383 in 65,535 bytes) is checked for repeats. */
struct ext_seen {
	uint64_t bits[65536 / 64];
};

/* RFC 5246 §7.4.1.4: no more than one extension of the same type. */
static int ext_once(struct ext_seen *s, uint16_t id)
{
	uint64_t bit = 1ull << (id % 64);

	if (s->bits[id / 64] & bit)
		return PXY_E_ILLEGAL_PARAM;
	s->bits[id / 64] |= bit;
	return PXY_OK;
}

/* The extensions block ending a hello; *present = 0 when the hello simply ends. */
static int open_exts(struct pxy_cur *b, struct pxy_cur *exts, int *present)
{
	*present = b->left != 0;
	if (!*present)
		return PXY_OK;
	PXY_TRY(pxy_cur_sub_u16(b, exts));
	return pxy_cur_end(b);
}

/* The next extension: its type and body; each type at most once. */
static int next_ext(struct pxy_cur *exts, struct ext_seen *seen, uint16_t *type, struct pxy_cur *ext)
{
	PXY_TRY(pxy_cur_u16(exts, type));
	PXY_TRY(pxy_cur_sub_u16(exts, ext));
	return ext_once(seen, *type);
}

/* version, random, session_id: the common start of both hellos */
static int parse_hello_start(struct pxy_cur *b, uint16_t *version, uint8_t random[32], uint8_t sid[32],
			     uint8_t *sid_len)
{
	struct pxy_cur s;

	PXY_TRY(pxy_cur_u16(b, version));
	PXY_TRY(pxy_cur_copy(b, random, 32));
	PXY_TRY(pxy_cur_sub_u8(b, &s));
	PXY_GUARD(s.left <= 32, PXY_E_DECODE);
	*sid_len = (uint8_t)s.left;
	return pxy_cur_copy(&s, sid, s.left);
}

static void copy_sni(char *dst, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < PXY_MAX_SNI; i++)
		dst[i] = (p[i] >= 0x21 && p[i] < 0x7f) ? (char)p[i] : '?';
	dst[i] = '\0';
}

static int parse_sni(struct pxy_cur ext, struct pxy_client_hello *ch)
{
	struct pxy_cur list, name;
	uint8_t type;

	PXY_TRY(pxy_cur_sub_u16(&ext, &list));
	PXY_TRY(pxy_cur_end(&ext));
	PXY_GUARD(list.left > 0, PXY_E_DECODE);
	while (list.left) {
		PXY_TRY(pxy_cur_u8(&list, &type));
		PXY_TRY(pxy_cur_sub_u16(&list, &name));
		/* RFC 6066 §3: at most one name of each type; we keep the host_name */
		if (type == 0 && ch->sni[0] == '\0') {
			PXY_GUARD(name.left > 0, PXY_E_DECODE);
			copy_sni(ch->sni, name.p, name.left);
		}
	}
	return PXY_OK;
}

static int parse_empty_ext(struct pxy_cur ext)
{
	return ext.left ? PXY_E_DECODE : PXY_OK;
}

static int parse_ch_versions(struct pxy_cur ext, struct pxy_client_hello *ch)
{
	struct pxy_cur list;
	uint16_t v;

	PXY_TRY(pxy_cur_sub_u8(&ext, &list));
	PXY_TRY(pxy_cur_end(&ext));
	PXY_GUARD(list.left >= 2 && list.left % 2 == 0, PXY_E_DECODE);
	while (list.left) {
		PXY_TRY(pxy_cur_u16(&list, &v));
		if (v == PXY_TLS13)
			ch->offers_tls13 = 1;
	}
	return PXY_OK;
}

static int parse_reneg_info(struct pxy_cur ext)
{
	struct pxy_cur data;

	PXY_TRY(pxy_cur_sub_u8(&ext, &data));
	return pxy_cur_end(&ext);
}

/* ---- ClientHello (RFC 5246 §7.4.1.2) ------------------------------------- */

int pxy_hs_parse_client_hello(struct pxy_cur b, struct pxy_client_hello *ch)
{
	struct pxy_cur suites, comp, exts;
	static _Thread_local struct ext_seen seen;
	uint8_t has_null = 0;
	int present;

	memset(&seen, 0, sizeof(seen));
	memset(ch, 0, sizeof(*ch));
	PXY_TRY(parse_hello_start(&b, &ch->version, ch->random, ch->sid, &ch->sid_len));
	PXY_TRY(pxy_cur_sub_u16(&b, &suites));
	PXY_GUARD(suites.left >= 2 && suites.left % 2 == 0, PXY_E_DECODE);
	ch->n_suites = (uint16_t)(suites.left / 2);
	while (suites.left) {
		uint16_t id;
		const struct pxy_suite *s;

		PXY_TRY(pxy_cur_u16(&suites, &id));
		if (id == 0x00ff)
			ch->scsv_reneg = 1;
		s = pxy_suite_find(id);
		if (s && s->kx == PXY_KX_RSA)
			ch->offers_rsa = 1;
	}
	PXY_TRY(pxy_cur_sub_u8(&b, &comp));
	PXY_GUARD(comp.left >= 1, PXY_E_DECODE);
	while (comp.left) {
		uint8_t m;
		PXY_TRY(pxy_cur_u8(&comp, &m));
		has_null |= (uint8_t)(m == 0);
	}
	/* RFC 5246 §7.4.1.2: the list MUST include the null method */
	PXY_GUARD(has_null, PXY_E_ILLEGAL_PARAM);
	PXY_TRY(open_exts(&b, &exts, &present)); /* no extensions at all is allowed */
	while (present && exts.left) {
		uint16_t type;
		struct pxy_cur ext;

		PXY_TRY(next_ext(&exts, &seen, &type, &ext));
		switch (type) {
		case PXY_EXT_SERVER_NAME:
			PXY_TRY(parse_sni(ext, ch));
			break;
		case PXY_EXT_ENCRYPT_THEN_MAC:
			PXY_TRY(parse_empty_ext(ext));
			ch->etm = 1;
			break;
		case PXY_EXT_EXTENDED_MASTER_SECRET:
			PXY_TRY(parse_empty_ext(ext));
			ch->ems = 1;
			break;
		case PXY_EXT_SESSION_TICKET:
			ch->ticket = 1;
			ch->ticket_len = (uint16_t)ext.left;
			ch->ticket_data = ext.p;
			break;
		case PXY_EXT_SUPPORTED_VERSIONS:
			PXY_TRY(parse_ch_versions(ext, ch));
			break;
		case PXY_EXT_RENEGOTIATION_INFO:
			PXY_TRY(parse_reneg_info(ext));
			ch->reneg_info = 1;
			break;
		case PXY_EXT_STATUS_REQUEST:
			ch->status_request = 1;
			break;
		case PXY_EXT_EARLY_DATA:
			PXY_TRY(parse_empty_ext(ext));
			ch->early_data = 1;
			break;
		case PXY_EXT_PRE_SHARED_KEY:
			ch->psk = 1; /* RFC 8446 §4.2.11: identities and binders; the server's to check */
			break;
		case PXY_EXT_POST_HANDSHAKE_AUTH:
			/* RFC 8446 §4.2.6: empty; a malformed one is the server's to refuse */
			ch->post_handshake_auth = ext.left == 0;
			break;
		default:
			break; /* unknown extensions are the server's business */
		}
	}
	return PXY_OK;
}

/* ---- SSLv2-compatible ClientHello (RFC 5246 Appendix E.2, RFC 6101 E.2) ---- */

int pxy_hs_parse_sslv2_client_hello(struct pxy_cur b, struct pxy_client_hello *ch)
{
	uint8_t type;
	uint16_t spec_len, sid_len, chal_len;
	struct pxy_cur specs, sid, chal;

	memset(ch, 0, sizeof(*ch));
	PXY_TRY(pxy_cur_u8(&b, &type));
	PXY_GUARD(type == PXY_HS_CLIENT_HELLO, PXY_E_NOT_TLS);
	PXY_TRY(pxy_cur_u16(&b, &ch->version));
	/* a TLS client's compatible hello names TLS; SSL 2.0 (0x0002) and SSL 3.0 are not decrypted */
	PXY_GUARD(ch->version >= PXY_TLS10 && ch->version >> 8 == 3, PXY_E_RECORD_VERSION);
	PXY_TRY(pxy_cur_u16(&b, &spec_len));
	PXY_TRY(pxy_cur_u16(&b, &sid_len));
	PXY_TRY(pxy_cur_u16(&b, &chal_len));
	/* cipher specs are 3 bytes; the session id 0 or 16 bytes; the challenge 16 to 32 */
	PXY_GUARD(spec_len >= 3 && spec_len % 3 == 0, PXY_E_DECODE);
	PXY_GUARD(sid_len == 0 || sid_len == 16, PXY_E_DECODE);
	PXY_GUARD(chal_len >= 16 && chal_len <= 32, PXY_E_DECODE);
	PXY_TRY(pxy_cur_sub(&b, spec_len, &specs));
	PXY_TRY(pxy_cur_sub(&b, sid_len, &sid));
	PXY_TRY(pxy_cur_sub(&b, chal_len, &chal));
	PXY_TRY(pxy_cur_end(&b));
	while (specs.left) {
		uint8_t k;
		uint16_t id;
		const struct pxy_suite *s;

		PXY_TRY(pxy_cur_u8(&specs, &k));
		PXY_TRY(pxy_cur_u16(&specs, &id));
		if (k != 0)
			continue; /* an SSL 2.0 cipher kind: no TLS suite */
		ch->n_suites++;
		if (id == 0x00ff)
			ch->scsv_reneg = 1;
		s = pxy_suite_find(id);
		if (s && s->kx == PXY_KX_RSA)
			ch->offers_rsa = 1;
	}
	/* RFC 5246 E.2: the challenge is the random, right-aligned, zeros before it */
	memcpy(ch->random + 32 - chal_len, chal.p, chal_len);
	ch->sid_len = (uint8_t)sid_len;
	memcpy(ch->sid, sid.p, sid_len);
	ch->sslv2 = 1;
	return PXY_OK;
}

/* ---- ServerHello (RFC 5246 §7.4.1.3, RFC 8446 §4.1.3) --------------------- */

/* SHA-256("HelloRetryRequest") */
static const uint8_t hrr_random[32] = {
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
};

int pxy_hs_parse_server_hello(struct pxy_cur b, struct pxy_server_hello *sh)
{
	struct pxy_cur exts;
	static _Thread_local struct ext_seen seen;
	int present;

	memset(&seen, 0, sizeof(seen));
	memset(sh, 0, sizeof(*sh));
	PXY_TRY(parse_hello_start(&b, &sh->legacy_version, sh->random, sh->sid, &sh->sid_len));
	PXY_TRY(pxy_cur_u16(&b, &sh->suite));
	PXY_TRY(pxy_cur_u8(&b, &sh->compression));
	sh->version = sh->legacy_version;
	sh->hello_retry = memcmp(sh->random, hrr_random, 32) == 0;
	PXY_TRY(open_exts(&b, &exts, &present));
	while (present && exts.left) {
		uint16_t type;
		struct pxy_cur ext;

		PXY_TRY(next_ext(&exts, &seen, &type, &ext));
		switch (type) {
		case PXY_EXT_ENCRYPT_THEN_MAC:
			PXY_TRY(parse_empty_ext(ext));
			sh->etm = 1;
			break;
		case PXY_EXT_EXTENDED_MASTER_SECRET:
			PXY_TRY(parse_empty_ext(ext));
			sh->ems = 1;
			break;
		case PXY_EXT_SESSION_TICKET:
			PXY_TRY(parse_empty_ext(ext));
			sh->ticket = 1;
			break;
		case PXY_EXT_STATUS_REQUEST:
			PXY_TRY(parse_empty_ext(ext));
			sh->status_request = 1;
			break;
		case PXY_EXT_SUPPORTED_VERSIONS:
			/* RFC 8446 §4.2.1: the ServerHello form is one selected version */
			PXY_TRY(pxy_cur_u16(&ext, &sh->version));
			PXY_TRY(pxy_cur_end(&ext));
			sh->has_supported_versions = 1;
			break;
		case PXY_EXT_RENEGOTIATION_INFO:
			PXY_TRY(parse_reneg_info(ext));
			sh->reneg_info = 1;
			break;
		case PXY_EXT_PRE_SHARED_KEY: {
			uint16_t selected;

			/* RFC 8446 §4.2.11: the index of the identity the server took */
			PXY_TRY(pxy_cur_u16(&ext, &selected));
			PXY_TRY(pxy_cur_end(&ext));
			sh->psk = 1;
			break;
		}
		default:
			break;
		}
	}
	return PXY_OK;
}

/* ---- Certificate (RFC 5246 §7.4.2) --------------------------------------- */

int pxy_hs_parse_certificate(struct pxy_cur b, struct pxy_certificate *c)
{
	struct pxy_cur list;

	memset(c, 0, sizeof(*c));
	PXY_TRY(pxy_cur_sub_u24(&b, &list));
	PXY_TRY(pxy_cur_end(&b));
	while (list.left) {
		struct pxy_cur cert;

		PXY_TRY(pxy_cur_sub_u24(&list, &cert));
		PXY_GUARD(cert.left > 0, PXY_E_DECODE);
		if (c->count == 0) {
			c->leaf = cert.p;
			c->leaf_len = cert.left;
		}
		c->count++;
	}
	return PXY_OK;
}

/* ---- CertificateRequest (RFC 5246 §7.4.4) -------------------------------- */

int pxy_hs_parse_certificate_request(struct pxy_cur b, uint16_t version)
{
	struct pxy_cur types, algs, cas;

	PXY_TRY(pxy_cur_sub_u8(&b, &types));
	PXY_GUARD(types.left >= 1, PXY_E_DECODE);
	if (version >= PXY_TLS12) {
		PXY_TRY(pxy_cur_sub_u16(&b, &algs));
		PXY_GUARD(algs.left >= 2 && algs.left % 2 == 0, PXY_E_DECODE);
	}
	PXY_TRY(pxy_cur_sub_u16(&b, &cas));
	while (cas.left) {
		struct pxy_cur dn;
		PXY_TRY(pxy_cur_sub_u16(&cas, &dn));
	}
	return pxy_cur_end(&b);
}

int pxy_hs_parse_empty(struct pxy_cur b)
{
	return b.left ? PXY_E_DECODE : PXY_OK;
}

/* ---- ClientKeyExchange, RSA (RFC 5246 §7.4.7.1) --------------------------- */

int pxy_hs_parse_cke_rsa(struct pxy_cur b, uint16_t version, const uint8_t **enc, size_t *len)
{
	struct pxy_cur epms;

	if (version == PXY_SSL30) {
		/* SSL 3.0 sends the ciphertext without a length prefix */
		epms = b;
	} else {
		PXY_TRY(pxy_cur_sub_u16(&b, &epms));
		PXY_TRY(pxy_cur_end(&b));
	}
	PXY_GUARD(epms.left > 0, PXY_E_DECODE);
	*enc = epms.p;
	*len = epms.left;
	return PXY_OK;
}

/* ---- CertificateVerify (RFC 5246 §7.4.8) ---------------------------------- */

int pxy_hs_parse_certificate_verify(struct pxy_cur b, uint16_t version)
{
	struct pxy_cur sig;

	if (version >= PXY_TLS12)
		PXY_TRY(pxy_cur_skip(&b, 2)); /* SignatureAndHashAlgorithm */
	PXY_TRY(pxy_cur_sub_u16(&b, &sig));
	return pxy_cur_end(&b);
}

/* ---- Finished (RFC 5246 §7.4.9) ------------------------------------------ */

int pxy_hs_parse_finished(struct pxy_cur b, const uint8_t **verify_data)
{
	PXY_TRY(pxy_cur_bytes(&b, PXY_FINISHED_LEN, verify_data));
	return pxy_cur_end(&b);
}

/* ---- NewSessionTicket (RFC 5077 §3.3) ------------------------------------ */

int pxy_hs_parse_new_session_ticket(struct pxy_cur b, uint32_t *lifetime, const uint8_t **ticket,
				    size_t *ticket_len)
{
	struct pxy_cur t;

	PXY_TRY(pxy_cur_u32(&b, lifetime));
	PXY_TRY(pxy_cur_sub_u16(&b, &t));
	PXY_TRY(pxy_cur_end(&b));
	*ticket = t.p;
	*ticket_len = t.left;
	return PXY_OK;
}

/* ---- CertificateStatus (RFC 6066 §8) ------------------------------------- */

int pxy_hs_parse_certificate_status(struct pxy_cur b)
{
	struct pxy_cur resp;
	uint8_t type;

	PXY_TRY(pxy_cur_u8(&b, &type));
	PXY_GUARD(type == 1, PXY_E_DECODE); /* ocsp */
	PXY_TRY(pxy_cur_sub_u24(&b, &resp));
	PXY_GUARD(resp.left > 0, PXY_E_DECODE);
	return pxy_cur_end(&b);
}

/* ---- TLS 1.3 messages (RFC 8446 §4.3-4.6) -------------------------------------- */

int pxy_hs_parse_encrypted_extensions(struct pxy_cur b, uint8_t *early_data)
{
	struct pxy_cur exts;
	static _Thread_local struct ext_seen seen;

	memset(&seen, 0, sizeof(seen));
	*early_data = 0;
	PXY_TRY(pxy_cur_sub_u16(&b, &exts));
	PXY_TRY(pxy_cur_end(&b));
	while (exts.left) {
		uint16_t type;
		struct pxy_cur ext;

		PXY_TRY(next_ext(&exts, &seen, &type, &ext));
		if (type == PXY_EXT_EARLY_DATA) {
			PXY_TRY(parse_empty_ext(ext));
			*early_data = 1;
		}
	}
	return PXY_OK;
}

int pxy_hs_parse_certificate13(struct pxy_cur b, struct pxy_certificate *c)
{
	struct pxy_cur ctx, list;

	memset(c, 0, sizeof(*c));
	PXY_TRY(pxy_cur_sub_u8(&b, &ctx));
	PXY_TRY(pxy_cur_sub_u24(&b, &list));
	PXY_TRY(pxy_cur_end(&b));
	c->context = ctx;
	while (list.left) {
		struct pxy_cur cert, exts;

		PXY_TRY(pxy_cur_sub_u24(&list, &cert));
		PXY_GUARD(cert.left > 0, PXY_E_DECODE);
		PXY_TRY(pxy_cur_sub_u16(&list, &exts));
		if (c->count == 0) {
			c->leaf = cert.p;
			c->leaf_len = cert.left;
		}
		c->count++;
	}
	return PXY_OK;
}

int pxy_hs_parse_certificate_request13(struct pxy_cur b, struct pxy_cur *context)
{
	struct pxy_cur ctx, exts;

	PXY_TRY(pxy_cur_sub_u8(&b, &ctx));
	PXY_TRY(pxy_cur_sub_u16(&b, &exts));
	PXY_GUARD(exts.left >= 2, PXY_E_DECODE); /* signature_algorithms is required */
	PXY_TRY(pxy_cur_end(&b));
	if (context)
		*context = ctx;
	return PXY_OK;
}

int pxy_hs_parse_finished13(struct pxy_cur b, size_t hash_len, const uint8_t **verify_data)
{
	PXY_TRY(pxy_cur_bytes(&b, hash_len, verify_data));
	return pxy_cur_end(&b);
}

int pxy_hs_parse_new_session_ticket13(struct pxy_cur b)
{
	struct pxy_cur nonce, ticket, exts;
	uint32_t lifetime, age_add;

	PXY_TRY(pxy_cur_u32(&b, &lifetime));
	PXY_TRY(pxy_cur_u32(&b, &age_add));
	PXY_TRY(pxy_cur_sub_u8(&b, &nonce));
	PXY_TRY(pxy_cur_sub_u16(&b, &ticket));
	PXY_GUARD(ticket.left > 0, PXY_E_DECODE);
	PXY_TRY(pxy_cur_sub_u16(&b, &exts));
	return pxy_cur_end(&b);
}

int pxy_hs_parse_key_update(struct pxy_cur b, uint8_t *requested)
{
	PXY_TRY(pxy_cur_u8(&b, requested));
	PXY_GUARD(*requested <= 1, PXY_E_ILLEGAL_PARAM);
	return pxy_cur_end(&b);
}

const char *pxy_hs_type_name(unsigned type)
{
	switch (type) {
	case PXY_HS_HELLO_REQUEST: return "HelloRequest";
	case PXY_HS_CLIENT_HELLO: return "ClientHello";
	case PXY_HS_SERVER_HELLO: return "ServerHello";
	case PXY_HS_NEW_SESSION_TICKET: return "NewSessionTicket";
	case PXY_HS_END_OF_EARLY_DATA: return "EndOfEarlyData";
	case PXY_HS_KEY_UPDATE: return "KeyUpdate";
	case PXY_HS_ENCRYPTED_EXTENSIONS: return "EncryptedExtensions";
	case PXY_HS_CERTIFICATE: return "Certificate";
	case PXY_HS_SERVER_KEY_EXCHANGE: return "ServerKeyExchange";
	case PXY_HS_CERTIFICATE_REQUEST: return "CertificateRequest";
	case PXY_HS_SERVER_HELLO_DONE: return "ServerHelloDone";
	case PXY_HS_CERTIFICATE_VERIFY: return "CertificateVerify";
	case PXY_HS_CLIENT_KEY_EXCHANGE: return "ClientKeyExchange";
	case PXY_HS_FINISHED: return "Finished";
	case PXY_HS_CERTIFICATE_STATUS: return "CertificateStatus";
	case PXY_HS_CCS: return "ChangeCipherSpec";
	default: return "unknown";
	}
}
