/*
 * Handshake messages: reassembly across records (RFC 5246 §6.2.1 lets a
 * message span records and a record carry several), and parsers for every
 * message the tap looks into. Parsers read only through struct pxy_cur and
 * reject trailing bytes, duplicate extensions and out-of-range lengths.
 */
#ifndef PXY_HS_H
#define PXY_HS_H

#include <stddef.h>
#include <stdint.h>

#include "tls/cursor.h"

enum pxy_hs_type {
	PXY_HS_HELLO_REQUEST = 0,
	PXY_HS_CLIENT_HELLO = 1,
	PXY_HS_SERVER_HELLO = 2,
	PXY_HS_NEW_SESSION_TICKET = 4,
	PXY_HS_END_OF_EARLY_DATA = 5,
	PXY_HS_ENCRYPTED_EXTENSIONS = 8,
	PXY_HS_CERTIFICATE = 11,
	PXY_HS_SERVER_KEY_EXCHANGE = 12,
	PXY_HS_CERTIFICATE_REQUEST = 13,
	PXY_HS_SERVER_HELLO_DONE = 14,
	PXY_HS_CERTIFICATE_VERIFY = 15,
	PXY_HS_CLIENT_KEY_EXCHANGE = 16,
	PXY_HS_FINISHED = 20,
	PXY_HS_CERTIFICATE_STATUS = 22,
	PXY_HS_KEY_UPDATE = 24,
	PXY_HS_MESSAGE_HASH = 254, /* RFC 8446 §4.4.1: the first ClientHello's hash after a HelloRetryRequest */
	/* not a message type: the ChangeCipherSpec record, in the state table */
	PXY_HS_CCS = 0x100,
};

enum pxy_ext_type {
	PXY_EXT_SERVER_NAME = 0,
	PXY_EXT_STATUS_REQUEST = 5,
	PXY_EXT_SUPPORTED_GROUPS = 10,
	PXY_EXT_EC_POINT_FORMATS = 11,
	PXY_EXT_SIGNATURE_ALGORITHMS = 13,
	PXY_EXT_ALPN = 16,
	PXY_EXT_ENCRYPT_THEN_MAC = 22,
	PXY_EXT_EXTENDED_MASTER_SECRET = 23,
	PXY_EXT_SESSION_TICKET = 35,
	PXY_EXT_PRE_SHARED_KEY = 41,
	PXY_EXT_EARLY_DATA = 42,
	PXY_EXT_SUPPORTED_VERSIONS = 43,
	PXY_EXT_POST_HANDSHAKE_AUTH = 49,
	PXY_EXT_RENEGOTIATION_INFO = 0xff01,
};

#define PXY_HS_HDR_LEN 4
#define PXY_MAX_SNI 255
#define PXY_FINISHED_LEN 12

/** Handshake reassembler for one direction. */
struct pxy_hs_rd {
	uint8_t *buf;
	size_t len, cap;
	size_t max_msg; /* largest message body accepted */
};

struct pxy_hs_msg {
	uint8_t type;
	const uint8_t *raw; /* header + body, for the transcript */
	size_t raw_len;
	struct pxy_cur body;
};

void pxy_hs_init(struct pxy_hs_rd *h, size_t max_msg);
void pxy_hs_free(struct pxy_hs_rd *h);
/** Append fragment bytes. PXY_E_HS_TOO_LARGE, PXY_E_NOMEM. */
int pxy_hs_feed(struct pxy_hs_rd *h, const uint8_t *p, size_t n);
/** 1 and *m if a whole message is at the front; 0 if not yet; <0 if too large. */
int pxy_hs_peek(struct pxy_hs_rd *h, struct pxy_hs_msg *m);
/** Drop the message returned by peek. */
void pxy_hs_pop(struct pxy_hs_rd *h);
/** 1 if no partial message is buffered. */
int pxy_hs_empty(const struct pxy_hs_rd *h);

struct pxy_client_hello {
	uint16_t version;
	uint8_t random[32];
	uint8_t sid_len;
	uint8_t sid[32];
	uint16_t n_suites;
	uint8_t offers_rsa;      /* at least one RSA key-exchange suite offered */
	uint8_t scsv_reneg;      /* TLS_EMPTY_RENEGOTIATION_INFO_SCSV */
	uint8_t ems, etm, ticket, reneg_info, status_request;
	uint8_t offers_tls13;    /* supported_versions lists 0x0304 */
	uint8_t early_data;      /* TLS 1.3 early_data: 0-RTT records may follow the hello */
	uint8_t psk;             /* TLS 1.3 pre_shared_key offered */
	uint8_t post_handshake_auth; /* TLS 1.3 post_handshake_auth: the server may ask for a certificate later */
	uint8_t sslv2;           /* it came in the SSLv2-compatible form (RFC 5246 E.2): no extensions */
	uint16_t ticket_len;
	const uint8_t *ticket_data; /* the offered ticket; points into the message: valid while it is */
	char sni[PXY_MAX_SNI + 1]; /* printable ASCII only; "" when absent */
};

struct pxy_server_hello {
	uint16_t legacy_version;
	uint16_t version; /* supported_versions if present, else legacy_version */
	uint8_t random[32];
	uint8_t sid_len;
	uint8_t sid[32];
	uint16_t suite;
	uint8_t compression;
	uint8_t ems, etm, ticket, reneg_info, status_request;
	uint8_t has_supported_versions;
	uint8_t hello_retry; /* RFC 8446 §4.1.3 special random */
	uint8_t psk;         /* TLS 1.3: pre_shared_key selected (a resumption: no Certificate) */
};

struct pxy_certificate {
	unsigned count;
	const uint8_t *leaf; /* DER of the first certificate, or NULL */
	size_t leaf_len;
	struct pxy_cur context; /* TLS 1.3: certificate_request_context */
};

int pxy_hs_parse_client_hello(struct pxy_cur body, struct pxy_client_hello *ch);
/** An SSLv2-compatible CLIENT-HELLO (RFC 5246 Appendix E.2) asking for TLS 1.0 or later: `msg` from
 * its msg_type on (the record's body, after the 2-byte header). The challenge becomes the random,
 * right-aligned behind zeros; the 3-byte cipher specs that are TLS suites ({0, hi, lo}) its suites.
 * PXY_E_RECORD_VERSION for a pure SSLv2 hello (version < 3.1). */
int pxy_hs_parse_sslv2_client_hello(struct pxy_cur msg, struct pxy_client_hello *ch);
int pxy_hs_parse_server_hello(struct pxy_cur body, struct pxy_server_hello *sh);
int pxy_hs_parse_certificate(struct pxy_cur body, struct pxy_certificate *c);
int pxy_hs_parse_certificate_request(struct pxy_cur body, uint16_t version);
int pxy_hs_parse_empty(struct pxy_cur body);
/** RSA ClientKeyExchange: the EncryptedPreMasterSecret (length-prefixed from TLS 1.0 on). */
int pxy_hs_parse_cke_rsa(struct pxy_cur body, uint16_t version, const uint8_t **enc, size_t *len);
int pxy_hs_parse_certificate_verify(struct pxy_cur body, uint16_t version);
int pxy_hs_parse_finished(struct pxy_cur body, const uint8_t **verify_data);
int pxy_hs_parse_new_session_ticket(struct pxy_cur body, uint32_t *lifetime, const uint8_t **ticket,
				    size_t *ticket_len);
int pxy_hs_parse_certificate_status(struct pxy_cur body);

/* TLS 1.3 (RFC 8446 §4.3-4.6) */
/** EncryptedExtensions; *early_data = 1 when the server took the client's 0-RTT data. */
int pxy_hs_parse_encrypted_extensions(struct pxy_cur body, uint8_t *early_data);
/** Certificate: request context, then CertificateEntry { cert_data, extensions } each. */
int pxy_hs_parse_certificate13(struct pxy_cur body, struct pxy_certificate *c);
/** CertificateRequest; *context (may be NULL) gets its certificate_request_context. */
int pxy_hs_parse_certificate_request13(struct pxy_cur body, struct pxy_cur *context);
/** Finished of Hash.length bytes. */
int pxy_hs_parse_finished13(struct pxy_cur body, size_t hash_len, const uint8_t **verify_data);
int pxy_hs_parse_new_session_ticket13(struct pxy_cur body);
/** KeyUpdate: *requested = update_requested (1) or not (0). */
int pxy_hs_parse_key_update(struct pxy_cur body, uint8_t *requested);

const char *pxy_hs_type_name(unsigned type);

#endif
