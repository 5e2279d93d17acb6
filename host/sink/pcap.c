#include "sink/pcap.h"

#include <netinet/in.h>
#include <string.h>

#define SHB_TYPE 0x0A0D0D0Au
#define IDB_TYPE 0x00000001u
#define EPB_TYPE 0x00000006u
#define DSB_TYPE 0x0000000Au
#define DSB_TLS_KEYLOG 0x544c534bu
#define LINKTYPE_RAW 101

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_PSH 0x08
#define TCP_ACK 0x10

/* pcapng is written in the host's byte order (the section header's magic says which) */
static void u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void u16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

/* network order, for the IP and TCP headers */
static void be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static size_t pad4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

size_t pxy_pcap_header(uint8_t *out, size_t cap)
{
	if (cap < 28 + 20)
		return 0;
	/* Section Header Block: magic, version 1.0, section length unknown */
	u32(out, SHB_TYPE);
	u32(out + 4, 28);
	u32(out + 8, 0x1A2B3C4Du);
	u16(out + 12, 1);
	u16(out + 14, 0);
	memset(out + 16, 0xff, 8);
	u32(out + 24, 28);
	/* Interface Description Block: raw IP, no snap length, µs timestamps (the default) */
	u32(out + 28, IDB_TYPE);
	u32(out + 32, 20);
	u16(out + 36, LINKTYPE_RAW);
	u16(out + 38, 0);
	u32(out + 40, 0);
	u32(out + 44, 20);
	return 48;
}

size_t pxy_pcap_dsb(uint8_t *out, size_t cap, const char *keylog, size_t len)
{
	size_t total = 20 + pad4(len);

	if (cap < total || len > UINT32_MAX - 64)
		return 0;
	u32(out, DSB_TYPE);
	u32(out + 4, (uint32_t)total);
	u32(out + 8, DSB_TLS_KEYLOG);
	u32(out + 12, (uint32_t)len);
	memcpy(out + 16, keylog, len);
	memset(out + 16 + len, 0, pad4(len) - len);
	u32(out + total - 4, (uint32_t)total);
	return total;
}

/* the Internet checksum (RFC 1071) over a buffer, folded into sum */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)(p[n - 1] << 8);
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t fnv(uint32_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

int pxy_pcap_flow_init(struct pxy_pcap_flow *f, const struct sockaddr *client, const struct sockaddr *server)
{
	const struct sockaddr *sa[2] = { client, server };
	uint32_t h = 2166136261u;

	memset(f, 0, sizeof(*f));
	if (client->sa_family != server->sa_family ||
	    (client->sa_family != AF_INET && client->sa_family != AF_INET6))
		return -1;
	f->family = client->sa_family;
	for (int i = 0; i < 2; i++) {
		if (f->family == AF_INET) {
			const struct sockaddr_in *s = (const struct sockaddr_in *)sa[i];
			memcpy(f->addr[i], &s->sin_addr, 4);
			f->port[i] = ntohs(s->sin_port);
		} else {
			const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa[i];
			memcpy(f->addr[i], &s->sin6_addr, 16);
			f->port[i] = ntohs(s->sin6_port);
		}
		h = fnv(h, f->addr[i], 16);
		h = fnv(h, (const uint8_t *)&f->port[i], 2);
	}
	/* initial sequence numbers: fixed per flow, so that a capture is reproducible */
	f->seq[0] = h;
	f->seq[1] = fnv(h, (const uint8_t *)"server", 6);
	f->ip_id[0] = (uint16_t)h;
	f->ip_id[1] = (uint16_t)(h >> 16);
	return 0;
}

/* One Enhanced Packet Block: IP + TCP header + n payload bytes from side d. */
static size_t packet(struct pxy_pcap_flow *f, int d, uint8_t flags, const uint8_t *p, size_t n, uint64_t ts_us,
		     uint8_t *out)
{
	size_t iplen = f->family == AF_INET ? 20 : 40, caplen = iplen + 20 + n, total = 28 + pad4(caplen) + 4;
	uint8_t *ip = out + 28, *tcp = ip + iplen;
	uint32_t sum;
	uint8_t proto_len[4];

	u32(out, EPB_TYPE);
	u32(out + 4, (uint32_t)total);
	u32(out + 8, 0);
	u32(out + 12, (uint32_t)(ts_us >> 32));
	u32(out + 16, (uint32_t)ts_us);
	u32(out + 20, (uint32_t)caplen);
	u32(out + 24, (uint32_t)caplen);
	if (f->family == AF_INET) {
		ip[0] = 0x45;
		ip[1] = 0;
		be16(ip + 2, (uint16_t)caplen);
		be16(ip + 4, f->ip_id[d]++);
		be16(ip + 6, 0x4000); /* don't fragment */
		ip[8] = 64;
		ip[9] = IPPROTO_TCP;
		be16(ip + 10, 0);
		memcpy(ip + 12, f->addr[d], 4);
		memcpy(ip + 16, f->addr[!d], 4);
		be16(ip + 10, csum_fold(csum_add(0, ip, 20)));
	} else {
		be32(ip, 0x60000000u);
		be16(ip + 4, (uint16_t)(20 + n));
		ip[6] = IPPROTO_TCP;
		ip[7] = 64;
		memcpy(ip + 8, f->addr[d], 16);
		memcpy(ip + 24, f->addr[!d], 16);
	}
	be16(tcp, f->port[d]);
	be16(tcp + 2, f->port[!d]);
	be32(tcp + 4, f->seq[d]);
	be32(tcp + 8, flags & TCP_ACK ? f->seq[!d] : 0);
	tcp[12] = 5 << 4;
	tcp[13] = flags;
	be16(tcp + 14, 65535);
	be16(tcp + 16, 0);
	be16(tcp + 18, 0);
	if (n)
		memcpy(tcp + 20, p, n);
	/* the TCP checksum covers a pseudo-header: the addresses, the protocol and the length */
	sum = csum_add(0, f->addr[d], f->family == AF_INET ? 4 : 16);
	sum = csum_add(sum, f->addr[!d], f->family == AF_INET ? 4 : 16);
	be16(proto_len, IPPROTO_TCP);
	be16(proto_len + 2, (uint16_t)(20 + n));
	sum = csum_add(sum, proto_len, 4);
	sum = csum_add(sum, tcp, 20 + n);
	be16(tcp + 16, csum_fold(sum));
	memset(out + 28 + caplen, 0, pad4(caplen) - caplen);
	u32(out + total - 4, (uint32_t)total);
	f->seq[d] += (uint32_t)n + ((flags & (TCP_SYN | TCP_FIN)) ? 1 : 0);
	return total;
}

#define HANDSHAKE_BYTES (3 * (28 + 40 + 20 + 4))

size_t pxy_pcap_data_bound(size_t n)
{
	size_t segs = n / PXY_PCAP_MSS + 1;

	return HANDSHAKE_BYTES + segs * (28 + 40 + 20 + 4 + 3) + n;
}

size_t pxy_pcap_data(struct pxy_pcap_flow *f, int d, const uint8_t *p, size_t n, uint64_t ts_us, uint8_t *out,
		     size_t cap)
{
	size_t o = 0;

	d = d ? 1 : 0;
	if (f->ended || cap < pxy_pcap_data_bound(n))
		return 0;
	if (!f->started) {
		o += packet(f, 0, TCP_SYN, NULL, 0, ts_us, out + o);
		o += packet(f, 1, TCP_SYN | TCP_ACK, NULL, 0, ts_us, out + o);
		o += packet(f, 0, TCP_ACK, NULL, 0, ts_us, out + o);
		f->started = 1;
	}
	while (n) {
		size_t k = n < PXY_PCAP_MSS ? n : PXY_PCAP_MSS;

		o += packet(f, d, TCP_PSH | TCP_ACK, p, k, ts_us, out + o);
		p += k;
		n -= k;
	}
	return o;
}

size_t pxy_pcap_fin(struct pxy_pcap_flow *f, uint64_t ts_us, uint8_t *out, size_t cap)
{
	size_t o = 0;

	if (!f->started || f->ended || cap < 3 * (28 + 40 + 20 + 4))
		return 0;
	o += packet(f, 0, TCP_FIN | TCP_ACK, NULL, 0, ts_us, out + o);
	o += packet(f, 1, TCP_FIN | TCP_ACK, NULL, 0, ts_us, out + o);
	o += packet(f, 0, TCP_ACK, NULL, 0, ts_us, out + o);
	f->ended = 1;
	return o;
}
