/* libFuzzer target: the key log a server writes (--key-source), which the
 * proxy reads line by line: any bytes, split into lines as the follower
 * splits them, into a small store (so that eviction runs too). A secret
 * that was stored comes back as it was written, and lookups of anything
 * else find nothing. Seeds: OpenSSL's and GnuTLS's key logs, TLS 1.2 and 1.3. */
#include <string.h>

#include "fuzz.h"
#include "tls/keystore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[200], err[200];
	struct pxy_keystore *ks = pxy_keystore_new(NULL, 60, 4, err, sizeof(err));
	uint8_t random[32], ms[48];
	const char *p = (const char *)data, *end = p + size;

	if (!ks)
		return 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		(void)pxy_keystore_add_line(ks, p, n, 1, why, sizeof(why));
		p += n + (nl != NULL);
	}
	memset(random, 0xee, sizeof(random));
	(void)pxy_keystore_master(ks, random, ms);
	pxy_keystore_refresh(ks, 1ull << 62); /* every secret expires, wiped */
	if (pxy_keystore_master(ks, random, ms))
		__builtin_trap();
	pxy_keystore_free(ks);
	return 0;
}
