/* pcapng formatting: blocks that parse back, checksums, sequence numbers, segmentation, IPv6, secrets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "sink/pcap.h"

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static unsigned be16(const uint8_t *p)
{
	return (unsigned)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* an independent RFC 1071 sum: 0xffff over data that carries its own checksum */
static unsigned sum16(const uint8_t *p, size_t n, unsigned s)
{
	for (size_t i = 0; i < n; i += 2)
		s += i + 1 < n ? be16(p + i) : (unsigned)p[i] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

struct parsed {
	uint8_t out[2][200000];
	size_t out_len[2];
	int packets, syn, fin, dsb;
	char secrets[512];
};

/* Walk every block; check each packet's headers and checksums; collect the payload per direction. */
static void walk(const uint8_t *p, size_t n, int v6, struct parsed *r)
{
	size_t o = 0;
	uint32_t next_seq[2] = { 0, 0 };
	int have_seq[2] = { 0, 0 };

	while (o < n) {
		uint32_t type = rd32(p + o), len = rd32(p + o + 4);

		assert_true(len >= 12 && len % 4 == 0 && o + len <= n);
		assert_int_equal(rd32(p + o + len - 4), len); /* the length at both ends */
		if (type == 6) {
			const uint8_t *ip = p + o + 28, *tcp;
			uint32_t caplen = rd32(p + o + 20);
			size_t iplen = v6 ? 40 : 20, plen;
			int d;
			unsigned s;

			assert_true(len < 4096); /* atomic on a pipe */
			assert_int_equal(caplen, rd32(p + o + 24));
			assert_true(28 + caplen + 4 <= len);
			tcp = ip + iplen;
			plen = caplen - iplen - 20;
			if (!v6) {
				assert_int_equal(ip[0], 0x45);
				assert_int_equal(be16(ip + 2), caplen);
				assert_int_equal(sum16(ip, 20, 0), 0xffff);
				d = ip[12 + 3] == 2; /* 10.0.0.1 client, 10.0.0.2 server */
				s = sum16(ip + 12, 8, 6 + 20 + (unsigned)plen);
			} else {
				assert_int_equal(ip[0] >> 4, 6);
				assert_int_equal(be16(ip + 4), 20 + plen);
				d = ip[8 + 15] == 2;
				s = sum16(ip + 8, 32, 6 + 20 + (unsigned)plen);
			}
			assert_int_equal(sum16(tcp, 20 + plen, s), 0xffff);
			assert_int_equal(be16(tcp), d ? 443 : 50000);
			if (tcp[13] & 0x02)
				r->syn++;
			if (tcp[13] & 0x01)
				r->fin++;
			if (plen) {
				/* in order: each segment starts where the last one ended */
				if (have_seq[d])
					assert_int_equal(be32(tcp + 4), next_seq[d]);
				next_seq[d] = be32(tcp + 4) + (uint32_t)plen;
				have_seq[d] = 1;
				assert_true(plen <= PXY_PCAP_MSS);
				memcpy(r->out[d] + r->out_len[d], tcp + 20, plen);
				r->out_len[d] += plen;
			}
			r->packets++;
		} else if (type == 0x0A) {
			uint32_t slen = rd32(p + o + 12);

			assert_int_equal(rd32(p + o + 8), 0x544c534b);
			memcpy(r->secrets, p + o + 16, slen);
			r->secrets[slen] = 0;
			r->dsb++;
		}
		o += len;
	}
	assert_int_equal(o, n);
}

static void run(int v6)
{
	struct sockaddr_in c4 = { .sin_family = AF_INET, .sin_port = htons(50000) }, s4 = c4;
	struct sockaddr_in6 c6 = { .sin6_family = AF_INET6, .sin6_port = htons(50000) }, s6 = c6;
	struct pxy_pcap_flow f;
	static struct parsed r;
	static uint8_t buf[400000], a[100000], b[30000];
	const char *kl = "CLIENT_RANDOM 00 11\n";
	size_t o = 0;

	memset(&r, 0, sizeof(r));
	inet_pton(AF_INET, "10.0.0.1", &c4.sin_addr);
	inet_pton(AF_INET, "10.0.0.2", &s4.sin_addr);
	s4.sin_port = htons(443);
	inet_pton(AF_INET6, "fd00::1", &c6.sin6_addr);
	inet_pton(AF_INET6, "fd00::2", &s6.sin6_addr);
	s6.sin6_port = htons(443);
	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(pxy_pcap_flow_init(&f, v6 ? (struct sockaddr *)&c6 : (struct sockaddr *)&c4,
					    v6 ? (struct sockaddr *)&s6 : (struct sockaddr *)&s4),
			 0);
	o += pxy_pcap_header(buf + o, sizeof(buf) - o);
	assert_int_equal(rd32(buf), 0x0A0D0D0A);
	assert_int_equal(rd32(buf + 8), 0x1A2B3C4D);
	assert_int_equal(rd32(buf + 28), 1);
	assert_int_equal(buf[36] | buf[37] << 8, 101); /* LINKTYPE_RAW (host byte order: this host is little-endian) */
	o += pxy_pcap_dsb(buf + o, sizeof(buf) - o, kl, strlen(kl));
	/* interleaved: c2s in pieces, s2c between */
	o += pxy_pcap_data(&f, 0, a, 5000, 1000, buf + o, sizeof(buf) - o);
	o += pxy_pcap_data(&f, 1, b, sizeof(b), 2000, buf + o, sizeof(buf) - o);
	o += pxy_pcap_data(&f, 0, a + 5000, sizeof(a) - 5000, 3000, buf + o, sizeof(buf) - o);
	o += pxy_pcap_fin(&f, 4000, buf + o, sizeof(buf) - o);
	assert_int_equal(pxy_pcap_fin(&f, 5000, buf + o, sizeof(buf) - o), 0); /* once */
	assert_int_equal(pxy_pcap_data(&f, 0, a, 10, 6000, buf + o, sizeof(buf) - o), 0); /* ended */
	walk(buf + 48, o - 48, v6, &r);
	assert_int_equal(r.syn, 2); /* SYN, SYN-ACK */
	assert_int_equal(r.fin, 2);
	assert_int_equal(r.dsb, 1);
	assert_string_equal(r.secrets, kl);
	assert_int_equal(r.out_len[0], sizeof(a));
	assert_int_equal(r.out_len[1], sizeof(b));
	assert_memory_equal(r.out[0], a, sizeof(a));
	assert_memory_equal(r.out[1], b, sizeof(b));
}

static void test_ipv4(void **state)
{
	(void)state;
	run(0);
}

static void test_ipv6(void **state)
{
	(void)state;
	run(1);
}

static void test_limits(void **state)
{
	struct sockaddr_in c4 = { .sin_family = AF_INET };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct pxy_pcap_flow f;
	uint8_t small[100], p[10] = { 0 };

	(void)state;
	/* different families: no flow */
	assert_int_equal(pxy_pcap_flow_init(&f, (struct sockaddr *)&c4, (struct sockaddr *)&s6), -1);
	/* too small a buffer: nothing written, the flow unchanged */
	assert_int_equal(pxy_pcap_flow_init(&f, (struct sockaddr *)&c4, (struct sockaddr *)&c4), 0);
	assert_int_equal(pxy_pcap_data(&f, 0, p, sizeof(p), 0, small, sizeof(small)), 0);
	assert_int_equal(f.started, 0);
	assert_int_equal(pxy_pcap_header(small, 40), 0);
	assert_int_equal(pxy_pcap_dsb(small, sizeof(small), (const char *)small, 90), 0);
	assert_true(PXY_PCAP_BLOCK_MAX < 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
