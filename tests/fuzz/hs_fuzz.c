/* libFuzzer target: every handshake-message parser (TLS 1.3's too), and the handshake reassembler. */
#include <string.h>

#include "fuzz.h"
#include "tls/hs.h"
#include "tls/suites.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pxy_client_hello ch;
	struct pxy_server_hello sh;
	struct pxy_certificate cert;
	struct pxy_hs_rd rd;
	struct pxy_hs_msg m;
	const uint8_t *p;
	size_t n;
	uint32_t life;
	uint16_t version;

	if (size < 1)
		return 0;
	version = (uint16_t)(0x0300 | (data[0] & 3));
	data++;
	size--;
	(void)pxy_hs_parse_client_hello(pxy_cur_make(data, size), &ch);
	(void)pxy_hs_parse_sslv2_client_hello(pxy_cur_make(data, size), &ch);
	(void)pxy_hs_parse_server_hello(pxy_cur_make(data, size), &sh);
	if (pxy_hs_parse_certificate(pxy_cur_make(data, size), &cert) == PXY_OK && cert.leaf)
		(void)memchr(cert.leaf, 0, cert.leaf_len);
	(void)pxy_hs_parse_certificate_request(pxy_cur_make(data, size), version);
	(void)pxy_hs_parse_empty(pxy_cur_make(data, size));
	if (pxy_hs_parse_cke_rsa(pxy_cur_make(data, size), version, &p, &n) == PXY_OK)
		(void)memchr(p, 0, n);
	(void)pxy_hs_parse_certificate_verify(pxy_cur_make(data, size), version);
	(void)pxy_hs_parse_finished(pxy_cur_make(data, size), &p);
	(void)pxy_hs_parse_new_session_ticket(pxy_cur_make(data, size), &life, &p, &n);
	(void)pxy_hs_parse_certificate_status(pxy_cur_make(data, size));
	/* TLS 1.3 */
	{
		uint8_t flag;

		(void)pxy_hs_parse_encrypted_extensions(pxy_cur_make(data, size), &flag);
		if (pxy_hs_parse_certificate13(pxy_cur_make(data, size), &cert) == PXY_OK && cert.leaf)
			(void)memchr(cert.leaf, 0, cert.leaf_len);
		(void)pxy_hs_parse_certificate_request13(pxy_cur_make(data, size), NULL);
		(void)pxy_hs_parse_finished13(pxy_cur_make(data, size), 32 + 16 * (version & 1), &p);
		(void)pxy_hs_parse_new_session_ticket13(pxy_cur_make(data, size));
		(void)pxy_hs_parse_key_update(pxy_cur_make(data, size), &flag);
	}

	/* the reassembler, fed in uneven pieces */
	pxy_hs_init(&rd, 4096);
	for (size_t off = 0, step = 1; off < size; off += step, step = step * 3 % 97 + 1) {
		size_t k = step < size - off ? step : size - off;
		int r;

		if (pxy_hs_feed(&rd, data + off, k) < 0)
			break;
		while ((r = pxy_hs_peek(&rd, &m)) == 1) {
			(void)pxy_hs_type_name(m.type);
			pxy_hs_pop(&rd);
		}
		if (r < 0)
			break;
	}
	pxy_hs_free(&rd);
	return 0;
}
