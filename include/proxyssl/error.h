/*
 * proxyssl error model.
 *
 * Every fallible function returns an int: 0 (PXY_OK) or a negative pxy error.
 * The magnitude packs three fields so that a caller can act on an error
 * without a lookup table:
 *
 *     bits 24..30  class   (IO, PROTOCOL, POLICY, CRYPTO, DEVICE, INTERNAL, USAGE)
 *     bits 16..23  the TLS alert description that a protocol error maps to
 *     bits  0..15  the error's own number
 *
 * Callers propagate with PXY_TRY(); functions that hold resources use one
 * `out:` cleanup label.
 */
#ifndef PROXYSSL_ERROR_H
#define PROXYSSL_ERROR_H

#include <stdint.h>

enum pxy_err_class {
	PXY_EC_NONE = 0,
	PXY_EC_IO = 1,
	PXY_EC_PROTOCOL = 2,
	PXY_EC_POLICY = 3,
	PXY_EC_CRYPTO = 4,
	PXY_EC_DEVICE = 5,
	PXY_EC_INTERNAL = 6,
	PXY_EC_USAGE = 7,
};

/* TLS alert descriptions (RFC 5246 §7.2) used by the proxy. */
enum pxy_alert {
	PXY_ALERT_CLOSE_NOTIFY = 0,
	PXY_ALERT_UNEXPECTED_MESSAGE = 10,
	PXY_ALERT_BAD_RECORD_MAC = 20,
	PXY_ALERT_RECORD_OVERFLOW = 22,
	PXY_ALERT_HANDSHAKE_FAILURE = 40,
	PXY_ALERT_ILLEGAL_PARAMETER = 47,
	PXY_ALERT_DECODE_ERROR = 50,
	PXY_ALERT_DECRYPT_ERROR = 51,
	PXY_ALERT_PROTOCOL_VERSION = 70,
	PXY_ALERT_INTERNAL_ERROR = 80,
};

#define PXY_ERRDEF(cls, alert, num) \
	(-(int32_t)(((int32_t)(cls) << 24) | ((int32_t)(alert) << 16) | (int32_t)(num)))

enum pxy_err {
	PXY_OK = 0,
	/* protocol: malformed or unexpected bytes from a peer */
	PXY_E_TRUNCATED = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_DECODE_ERROR, 1),
	PXY_E_DECODE = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_DECODE_ERROR, 2),
	PXY_E_TRAILING = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_DECODE_ERROR, 3),
	PXY_E_RECORD_TYPE = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_UNEXPECTED_MESSAGE, 4),
	PXY_E_RECORD_VERSION = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_PROTOCOL_VERSION, 5),
	PXY_E_RECORD_OVERFLOW = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_RECORD_OVERFLOW, 6),
	PXY_E_UNEXPECTED_MSG = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_UNEXPECTED_MESSAGE, 7),
	PXY_E_HS_TOO_LARGE = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_HANDSHAKE_FAILURE, 8),
	PXY_E_ILLEGAL_PARAM = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_ILLEGAL_PARAMETER, 9),
	PXY_E_EMPTY_RECORD = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_UNEXPECTED_MESSAGE, 10),
	PXY_E_NOT_TLS = PXY_ERRDEF(PXY_EC_PROTOCOL, PXY_ALERT_DECODE_ERROR, 11),
	/* crypto: a record or message failed authentication */
	PXY_E_BAD_RECORD_MAC = PXY_ERRDEF(PXY_EC_CRYPTO, PXY_ALERT_BAD_RECORD_MAC, 1),
	PXY_E_FINISHED = PXY_ERRDEF(PXY_EC_CRYPTO, PXY_ALERT_DECRYPT_ERROR, 2),
	PXY_E_CRYPTO_LIB = PXY_ERRDEF(PXY_EC_CRYPTO, PXY_ALERT_INTERNAL_ERROR, 3),
	PXY_E_KEY = PXY_ERRDEF(PXY_EC_CRYPTO, PXY_ALERT_INTERNAL_ERROR, 4),
	/* device/engine */
	PXY_E_BUSY = PXY_ERRDEF(PXY_EC_DEVICE, PXY_ALERT_INTERNAL_ERROR, 1),
	PXY_E_ENGINE = PXY_ERRDEF(PXY_EC_DEVICE, PXY_ALERT_INTERNAL_ERROR, 2),
	PXY_E_NO_ENGINE = PXY_ERRDEF(PXY_EC_DEVICE, PXY_ALERT_INTERNAL_ERROR, 3),
	/* io */
	PXY_E_IO = PXY_ERRDEF(PXY_EC_IO, PXY_ALERT_INTERNAL_ERROR, 1),
	/* internal */
	PXY_E_NOMEM = PXY_ERRDEF(PXY_EC_INTERNAL, PXY_ALERT_INTERNAL_ERROR, 1),
	PXY_E_STATE = PXY_ERRDEF(PXY_EC_INTERNAL, PXY_ALERT_INTERNAL_ERROR, 2),
	PXY_E_LIMIT = PXY_ERRDEF(PXY_EC_INTERNAL, PXY_ALERT_INTERNAL_ERROR, 3),
	/* usage: configuration and command line */
	PXY_E_USAGE = PXY_ERRDEF(PXY_EC_USAGE, 0, 1),
	PXY_E_CONFIG = PXY_ERRDEF(PXY_EC_USAGE, 0, 2),
	PXY_E_FILE = PXY_ERRDEF(PXY_EC_USAGE, 0, 3),
};

static inline int pxy_err_class(int e)
{
	return e < 0 ? (int)(((uint32_t)-e >> 24) & 0x7f) : PXY_EC_NONE;
}

static inline int pxy_err_alert(int e)
{
	return e < 0 ? (int)(((uint32_t)-e >> 16) & 0xff) : 0;
}

/** A short, stable, human-readable name for an error ("truncated", "bad-record-mac"). */
const char *pxy_err_str(int e);

/** The class's name ("protocol", "crypto", ...). */
const char *pxy_err_class_str(int e);
/** An alert description's name (RFC 5246 §7.2, RFC 8446 §6): "decode_error"; "unknown" otherwise. */
const char *pxy_alert_name(unsigned desc);

#define PXY_TRY(expr)                              \
	do {                                       \
		int pxy_try_r_ = (expr);           \
		if (pxy_try_r_ < 0)                \
			return pxy_try_r_;         \
	} while (0)

#define PXY_GUARD(cond, err)        \
	do {                        \
		if (!(cond))        \
			return (err); \
	} while (0)

#endif
