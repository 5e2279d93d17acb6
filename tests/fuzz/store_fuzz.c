/* libFuzzer target: what the shared session store (Redis) hands back, which
 * another node or anyone with access to Redis may have written: the sealed
 * value (magic, nonce, tag: refused unless it authenticates) and the session
 * format inside it, which must parse only what it writes back byte for byte.
 * Seeds: sessions of every shape (client certificate or not, long subjects). */
#include <string.h>

#include "fuzz.h"
#include "io/redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t k[PXY_REDIS_KEY_LEN] = { 1, 2, 3 }, key[PXY_SESSION_KEY_LEN] = { 4, 5, 6 };
	uint8_t again[PXY_REDIS_VALUE_MAX], sealed[PXY_REDIS_VALUE_MAX];
	struct pxy_session s, t;
	size_t n, m;

	/* a forged sealed value never opens */
	if (pxy_redis_open(k, key, data, size, &s) == 0)
		__builtin_trap();
	/* the session format: what parses writes back the same, and survives sealing */
	if (pxy_redis_session_parse(data, size, &s) == 0) {
		n = pxy_redis_session_put(&s, again, sizeof(again));
		if (n != size || memcmp(again, data, size))
			__builtin_trap();
		m = pxy_redis_seal(k, key, &s, sealed, sizeof(sealed));
		if (!m || pxy_redis_open(k, key, sealed, m, &t) || memcmp(s.ms, t.ms, 48) ||
		    strcmp(s.client.subject, t.client.subject) || strcmp(s.client.serial, t.client.serial))
			__builtin_trap();
	}
	return 0;
}
