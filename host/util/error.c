#include "proxyssl/error.h"

const char *pxy_err_str(int e)
{
	switch (e) {
	case PXY_OK: return "ok";
	case PXY_E_TRUNCATED: return "truncated";
	case PXY_E_DECODE: return "decode-error";
	case PXY_E_TRAILING: return "trailing-bytes";
	case PXY_E_RECORD_TYPE: return "bad-record-type";
	case PXY_E_RECORD_VERSION: return "bad-record-version";
	case PXY_E_RECORD_OVERFLOW: return "record-overflow";
	case PXY_E_UNEXPECTED_MSG: return "unexpected-message";
	case PXY_E_HS_TOO_LARGE: return "handshake-too-large";
	case PXY_E_ILLEGAL_PARAM: return "illegal-parameter";
	case PXY_E_EMPTY_RECORD: return "empty-record";
	case PXY_E_NOT_TLS: return "not-tls";
	case PXY_E_BAD_RECORD_MAC: return "bad-record-mac";
	case PXY_E_FINISHED: return "finished-mismatch";
	case PXY_E_CRYPTO_LIB: return "crypto-library-error";
	case PXY_E_KEY: return "bad-key";
	case PXY_E_BUSY: return "engine-busy";
	case PXY_E_ENGINE: return "engine-error";
	case PXY_E_NO_ENGINE: return "no-such-engine";
	case PXY_E_IO: return "io-error";
	case PXY_E_NOMEM: return "out-of-memory";
	case PXY_E_STATE: return "internal-state";
	case PXY_E_LIMIT: return "limit";
	case PXY_E_USAGE: return "usage";
	case PXY_E_CONFIG: return "config";
	case PXY_E_FILE: return "file";
	default: return "unknown-error";
	}
}

const char *pxy_err_class_str(int e)
{
	static const char *const names[] = { "none", "io", "protocol", "policy", "crypto", "device", "internal", "usage" };
	int c = pxy_err_class(e);
	return c >= 0 && c < 8 ? names[c] : "?";
}

const char *pxy_alert_name(unsigned desc)
{
	/* RFC 5246 §7.2, RFC 8446 §6 */
	switch (desc) {
	case 0: return "close_notify";
	case 10: return "unexpected_message";
	case 20: return "bad_record_mac";
	case 21: return "decryption_failed";
	case 22: return "record_overflow";
	case 30: return "decompression_failure";
	case 40: return "handshake_failure";
	case 41: return "no_certificate";
	case 42: return "bad_certificate";
	case 43: return "unsupported_certificate";
	case 44: return "certificate_revoked";
	case 45: return "certificate_expired";
	case 46: return "certificate_unknown";
	case 47: return "illegal_parameter";
	case 48: return "unknown_ca";
	case 49: return "access_denied";
	case 50: return "decode_error";
	case 51: return "decrypt_error";
	case 60: return "export_restriction";
	case 70: return "protocol_version";
	case 71: return "insufficient_security";
	case 80: return "internal_error";
	case 86: return "inappropriate_fallback";
	case 90: return "user_canceled";
	case 100: return "no_renegotiation";
	case 109: return "missing_extension";
	case 110: return "unsupported_extension";
	case 112: return "unrecognized_name";
	case 113: return "bad_certificate_status_response";
	case 115: return "unknown_psk_identity";
	case 116: return "certificate_required";
	case 120: return "no_application_protocol";
	default: return "unknown";
	}
}
