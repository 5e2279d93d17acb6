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
