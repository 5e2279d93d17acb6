/*
 * Output formats: NSS key log lines, plaintext file names, the connection
 * log line and the reject line. Formatting only; the io loop writes.
 */
#ifndef PXY_SINKS_H
#define PXY_SINKS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tls/cert.h"
#include "tls/tap.h"

/** "CLIENT_RANDOM <64 hex> <96 hex>\n" (NSS key log format); returns its length. */
size_t pxy_keylog_line(char *out, size_t cap, const uint8_t client_random[32], const uint8_t ms[48]);

/** "<dir>/<id>.c2s" or ".s2c". */
int pxy_plaintext_path(char *out, size_t cap, const char *dir, const char *id, enum pxy_dir d);

/** "1.2.3.4:5" or "[::1]:5". */
void pxy_addr_str(const struct sockaddr *sa, char *out, size_t cap);

struct pxy_conn_summary {
	const char *id;
	const char *vserver; /* [vserver NAME] (JSON only: log lines carry it after the level); NULL: none */
	const char *client, *server;
	const struct pxy_tap_info *tap; /* NULL: no TLS seen */
	enum pxy_outcome outcome;
	enum pxy_reason reason;
	uint64_t bytes[2];  /* forwarded per direction */
	uint64_t duration_us;
	uint64_t start_unix_us; /* wall clock at accept (JSON only) */
	const char *close; /* "fin", "reset", "reject" */
	const char *engine; /* the engine's name (JSON only; NULL: left out) */
};

/** One line, key=value pairs (README "Connection log"). */
size_t pxy_connlog_format(char *out, size_t cap, const struct pxy_conn_summary *s);

/**
 * The same as one JSON object and a newline (README "JSON connection log"),
 * for --conn-log. Returns its length, 0 when it does not fit in cap.
 */
size_t pxy_connlog_json(char *out, size_t cap, const struct pxy_conn_summary *s);

/** The line logged when the policy rejects a handshake. */
size_t pxy_rejectlog_format(char *out, size_t cap, const char *id, const struct pxy_tap_info *tap,
			    const struct pxy_cert_info *expected);

#endif
