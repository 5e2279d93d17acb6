/*
 * pcapng for the tools people already use (Wireshark, tshark, IDSs):
 * formatting only, the io loop writes the bytes.
 *
 *  - the section header and one interface, LINKTYPE_RAW (IPv4 and IPv6
 *    packets, no link layer), microsecond timestamps;
 *  - synthetic TCP/IP packets for a connection: one TCP flow with the
 *    original client and server addresses and ports, a three-way handshake
 *    when it starts, data in segments of at most PXY_PCAP_MSS bytes with
 *    sequence and acknowledgement numbers that follow each other, a FIN
 *    exchange at the end; IPv4 and TCP checksums are right, so a capture
 *    checked with validation on shows no errors;
 *  - the Decryption Secrets Block (type 0x0A, TLS key log), with which
 *    Wireshark decrypts the TLS packets that follow it without a key file.
 *
 * Each packet block stays under PIPE_BUF (4096 bytes), so that one write of
 * it to a pipe is atomic: the live feed drops whole packets, never parts.
 */
#ifndef PXY_PCAP_H
#define PXY_PCAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PXY_PCAP_MSS 1400
/** The largest packet block pxy_pcap_data and pxy_pcap_fin write. */
#define PXY_PCAP_BLOCK_MAX (28 + 4 + 40 + 20 + PXY_PCAP_MSS + 4)

struct pxy_pcap_flow {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[2][16]; /* [0] client, [1] server */
	uint16_t port[2];
	uint32_t seq[2];  /* next sequence number from each side */
	uint16_t ip_id[2];
	uint8_t started, ended;
};

/** A flow between client and server (same family); the initial sequence numbers are derived from them. */
int pxy_pcap_flow_init(struct pxy_pcap_flow *f, const struct sockaddr *client, const struct sockaddr *server);

/** Section Header Block and Interface Description Block; bytes written, 0 if cap is too small. */
size_t pxy_pcap_header(uint8_t *out, size_t cap);

/** A Decryption Secrets Block holding TLS key log lines; 0 if cap is too small. */
size_t pxy_pcap_dsb(uint8_t *out, size_t cap, const char *keylog, size_t len);

/** The bytes pxy_pcap_data writes at most for n payload bytes. */
size_t pxy_pcap_data_bound(size_t n);

/**
 * Packet blocks carrying n bytes sent by the client (d = 0) or the server
 * (d = 1) at ts_us (Unix time, µs); the handshake first if the flow has not
 * started. Bytes written; 0 if cap is too small (the flow is unchanged).
 */
size_t pxy_pcap_data(struct pxy_pcap_flow *f, int d, const uint8_t *p, size_t n, uint64_t ts_us, uint8_t *out,
		     size_t cap);

/** The FIN exchange, once (0 afterwards, or if the flow never started). */
size_t pxy_pcap_fin(struct pxy_pcap_flow *f, uint64_t ts_us, uint8_t *out, size_t cap);

#endif
