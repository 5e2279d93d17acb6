#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxyssl/engine.h"
#include "tls/keystore.h"
#include "device/dev.h"
#include "proxyssl/error.h"
#include "tls/tap.h"
#include "util/addr.h"
#include "util/util.h"

enum opt_kind { K_STR, K_U64, K_SIZE, K_BOOL };

/*
 * What a reload (SIGHUP) does with a changed value: applies it (RELOADS), or
 * keeps the running one, which only a restart changes, and names the change
 * (RESTART). --max-conns is kept without a word (RESTART_UNNAMED): the loops
 * run with their share of it, cut to the descriptor limit, not with the
 * setting itself.
 */
enum opt_reload { RELOADS, RESTART, RESTART_UNNAMED };

/* A value check beyond type and range; 0 or -1 with the reason in why. */
typedef int (*opt_check)(const char *raw, uint64_t num, char *why, size_t n);

struct opt_def {
	const char *name;
	enum opt_kind kind;
	size_t off;
	uint64_t min, max;
	enum opt_reload reload;
	const char *arg, *help;
	opt_check check;
	uint64_t (*auto_value)(void); /* the value "auto" stands for (NULL: no "auto") */
	int keeps_auto; /* "auto" is kept as PXY_CONFIG_AUTO, for the start to decide */
};

/* --workers auto: one per online core */
static uint64_t online_cores(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	return cores < 1 ? 1 : (uint64_t)cores;
}

#define STR(f) K_STR, offsetof(struct pxy_config, f), 0, 0
#define U64(f, lo, hi) K_U64, offsetof(struct pxy_config, f), lo, hi
#define SIZE(f, lo, hi) K_SIZE, offsetof(struct pxy_config, f), lo, hi
/* a switch: --NAME alone turns it on; NAME = yes|no in a file, --NAME=no on the command line */
#define BOOL(f) K_BOOL, offsetof(struct pxy_config, f), 0, 1

static int check_listen(const char *raw, uint64_t num, char *why, size_t n)
{
	char host[256];
	uint16_t port;

	(void)num;
	return pxy_addr_split(raw, 0, host, sizeof(host), &port, why, n);
}

static int check_backend(const char *raw, uint64_t num, char *why, size_t n)
{
	char host[256];
	uint16_t port;

	(void)num;
	if (!strcmp(raw, "original"))
		return 0;
	return pxy_addr_split(raw, 1, host, sizeof(host), &port, why, n);
}

static int check_session_cache(const char *raw, uint64_t num, char *why, size_t n)
{
	uint64_t v;

	(void)num;
	if (!strncmp(raw, "redis://", 8))
		return raw[8] ? 0 : (snprintf(why, n, "'%s': no host", raw), -1);
	if (pxy_parse_u64(raw, 0, 1u << 24, &v)) {
		snprintf(why, n, "'%s' is neither a number between 0 and %u nor redis://HOST[:PORT][/DB]", raw, 1u << 24);
		return -1;
	}
	return 0;
}

static int check_engine(const char *raw, uint64_t num, char *why, size_t n)
{
	(void)num;
	if (pxy_engine_find(raw))
		return 0;
	snprintf(why, n, "unknown engine '%s' (this build has: %s)", raw, pxy_engine_names());
	return -1;
}

static int check_log_level(const char *raw, uint64_t num, char *why, size_t n)
{
	(void)num;
	if (!strcmp(raw, "error") || !strcmp(raw, "warn") || !strcmp(raw, "info") || !strcmp(raw, "debug"))
		return 0;
	snprintf(why, n, "'%s' is not error, warn, info or debug", raw);
	return -1;
}

static int check_pow2(const char *raw, uint64_t num, char *why, size_t n)
{
	(void)raw;
	if ((num & (num - 1)) == 0)
		return 0;
	snprintf(why, n, "%llu is not a power of two", (unsigned long long)num);
	return -1;
}

static int check_xclbin(const char *raw, uint64_t num, char *why, size_t n)
{
	struct pxy_xclbin_info info;

	(void)num;
	return pxy_xclbin_info(raw, &info, why, n) < 0 ? -1 : 0;
}

static int check_emu_timing(const char *raw, uint64_t num, char *why, size_t n)
{
	struct pxy_dev_emu_timing t;

	(void)num;
	return pxy_dev_emu_timing_load(raw, &t, why, n);
}

static int check_key_source(const char *raw, uint64_t num, char *why, size_t n)
{
	const char *path;

	(void)num;
	return pxy_key_source_parse(raw, &path, why, n);
}

static int check_passthrough(const char *raw, uint64_t num, char *why, size_t n)
{
	uint32_t mask;

	(void)num;
	return pxy_passthrough_parse(raw, &mask, why, n);
}

/* One table drives the command line, the config file, --help and what a reload applies. */
static const struct opt_def opts[] = {
	{ "listen", STR(listen), RESTART, "ADDR:PORT", "address to accept clients on (required)", check_listen },
	{ "backend", STR(backend), RELOADS, "ADDR:PORT",
	  "TLS server to forward to, or 'original': each client's original destination (transparent mode, behind "
	  "an iptables/nft REDIRECT or TPROXY rule) (required)",
	  check_backend },
	{ "cert", STR(cert), RELOADS, "FILE[,FILE...]",
	  "the server's certificate, PEM: the one the server must present; several, comma-separated, for a "
	  "server with several (required)" },
	{ "key", STR(key), RELOADS, "FILE[,FILE...]",
	  "the server's RSA private key, PEM, unencrypted; one per --cert (required)" },
	{ "engine", STR(engine), RESTART, "NAME",
	  "crypto engine: auto (the card if usable, else emu), xrt (Alveo card), emu (the card's kernels emulated "
	  "in software) or cpu (OpenSSL) (default auto)", check_engine },
	{ "xclbin", STR(xclbin), RESTART, "FILE",
	  "the kernels: the card's xclbin for xrt/auto, or an emulation xclbin for emu (default: this build's "
	  "emulation xclbin)", check_xclbin },
	{ "emu-timing", STR(emu_timing), RESTART, "CARD[:SCALE]",
	  "emu: complete kernel runs when the card would, by firmware/perf_model.py's model of u250 or u55c (or a "
	  "timing table file), on an emulation xclbin with that card's compute units; SCALE stretches every "
	  "modelled time for a host slower than the card (default: runs end when the emulation ends)",
	  check_emu_timing },
	{ "device", U64(device, 0, 63), RESTART, "N", "the card's index for xrt/auto (default 0)" },
	{ "engine-batch", U64(engine_batch, 0, 128), RESTART, "N",
	  "xrt/emu: most jobs per kernel launch; 0 fills to the kernel's limit, 64 RSA, 128 records (default 0)" },
	{ "engine-timeout", U64(engine_timeout_ms, 100, 600000), RESTART, "MS",
	  "xrt/emu: a kernel run longer than this is a card failure; work fails over to cpu (default 10000)" },
	{ "engine-threads", U64(engine_threads, 0, 256), RESTART, "N|auto",
	  "threads the engine may use beside the io loops: cpu workers, or emu's compute units (one each) and "
	  "software fallback; 0: jobs run on the io loop's thread (emu: kernels inline); auto: the cores not "
	  "taken by io loops, less one, 0 on a machine with none to spare (default auto)",
	  NULL, NULL, 1 },
	{ "key-source", STR(key_source), RESTART, "file:PATH|shared",
	  "secrets servers forward (RFC 9850 key log: CLIENT_RANDOM and the TLS 1.3 traffic secrets), followed as "
	  "a server on this host writes them (openssl s_server -keylogfile, SSLKEYLOGFILE), truncation and "
	  "rotation included: ECDHE and DHE sessions (TLS 1.0-1.2) and TLS 1.3 sessions are then decrypted with "
	  "them instead of refused; with the shared session store every node's secrets reach the others, and "
	  "shared takes them from there alone (default: none)",
	  check_key_source },
	{ "key-listen", STR(key_listen), RESTART, "ADDR:PORT",
	  "receive key log lines from remote servers (proxyssl-keyfwd) over TLS with mutual certificate "
	  "authentication: a forwarder needs a certificate from --key-listen-ca; its lines go to every virtual "
	  "server's forwarded keys, as --key-source's do (default: none)",
	  check_listen },
	{ "key-listen-cert", STR(key_listen_cert), RESTART, "FILE", "the key listener's certificate (chain), PEM" },
	{ "key-listen-key", STR(key_listen_key), RESTART, "FILE", "the key listener's private key, PEM" },
	{ "key-listen-ca", STR(key_listen_ca), RESTART, "FILE",
	  "the CA certificates a forwarder's certificate must chain to, PEM; any other client is refused and logged" },
	{ "key-wait", U64(key_wait_ms, 10, 600000), RESTART, "MS",
	  "how long a session's records wait for its forwarded secret; then it is logged not-decrypted, "
	  "keys-missing (forwarding never waits) (default 5000)" },
	{ "key-ttl", U64(key_ttl_s, 1, 86400), RESTART, "SECONDS",
	  "how long a forwarded secret is kept, matched or not; then it is wiped (default 60)" },
	{ "key-max", U64(key_max, 16, 10000000), RESTART, "N",
	  "forwarded secrets kept at most (the oldest go first, wiped) (default 100000)" },
	{ "require-keys", BOOL(require_keys), RESTART, "[=yes|no]",
	  "with forwarded keys: fail closed; the server's first encrypted flight is held until the session's "
	  "forwarded keys arrive and verify (up to --key-wait), else both sides get alert 40 and a reset "
	  "(reason keys-missing) (default no: forwarding never waits)" },
	{ "passthrough", STR(passthrough), RELOADS, "REASONS",
	  "forward sessions rejected for these reasons untouched instead: comma-separated tls13, "
	  "unsupported-version, non-rsa-kx, unsupported-suite, cert-mismatch, or all, or none (default none)",
	  check_passthrough },
	{ "keylog", STR(keylog), RELOADS, "FILE", "append NSS key log lines (RFC 9850: CLIENT_RANDOM, and the TLS 1.3 traffic secrets of sessions decrypted with forwarded keys) for Wireshark" },
	{ "conn-log", STR(conn_log), RELOADS, "FILE",
	  "append one JSON object per connection (JSON lines): times, addresses, SNI, version, suite, resumption, "
	  "certificates, verdict, reason, bytes, engine" },
	{ "metrics", STR(metrics), RESTART, "ADDR:PORT",
	  "serve Prometheus metrics over HTTP at http://ADDR:PORT/metrics", check_listen },
	{ "pcap", STR(pcap), RESTART, "FILE",
	  "write the decrypted traffic as pcapng: one TCP flow a connection, original addresses and ports" },
	{ "pcap-tls", STR(pcap_tls), RESTART, "FILE",
	  "write the TLS traffic as pcapng with its secrets embedded (Wireshark decrypts it with no key file)" },
	{ "pcap-rotate", SIZE(pcap_rotate, 0, 1ull << 40), RESTART, "BYTES",
	  "rotate the capture files past this size: FILE.1, FILE.2, ... (default 0: never)" },
	{ "pcap-feed", STR(pcap_feed), RESTART, "FIFO",
	  "feed the decrypted pcapng live to a reader of FIFO (created if missing); packets it cannot take are "
	  "dropped and counted, never waited for" },
	{ "plaintext-dir", STR(plaintext_dir), RELOADS, "DIR",
	  "write decrypted data to DIR/<id>.c2s and DIR/<id>.s2c" },
	{ "log", STR(log), RELOADS, "FILE", "log to FILE instead of stderr" },
	{ "log-level", STR(log_level), RELOADS, "LEVEL", "error, warn, info or debug (default info)", check_log_level },
	{ "connect-timeout", U64(connect_timeout_ms, 1, 3600000), RELOADS, "MS",
	  "backend connect timeout (default 5000)" },
	{ "handshake-timeout", U64(handshake_timeout_ms, 0, 3600000), RELOADS, "MS",
	  "reset a connection whose TLS handshake has not finished this long after accept (slowloris); 0: "
	  "none (default 10000)" },
	{ "idle-timeout", U64(idle_timeout_ms, 0, 86400000), RELOADS, "MS",
	  "reset a connection that moved no byte either way for this long; 0: none (default 300000)" },
	{ "drain-timeout", U64(drain_timeout_ms, 0, 3600000), RELOADS, "MS",
	  "on SIGTERM/SIGINT, how long open connections may go on before they are reset; 0 resets at once "
	  "(default 20000)" },
	{ "max-conns", U64(max_conns, 1, 1000000), RESTART_UNNAMED, "N",
	  "concurrent connections; more are refused (default 16384)" },
	{ "buffers", U64(buffers, 16, 32768), RESTART, "N", "receive buffers in the ring, a power of two (default 256)",
	  check_pow2 },
	{ "buffer-size", SIZE(buffer_size, 1024, 1048576), RESTART, "BYTES", "bytes per receive buffer (default 64K)" },
	{ "max-queue", SIZE(max_queue, 4096, 1ull << 30), RESTART,
	  "BYTES", "bytes buffered per direction before reading pauses; also the hold limit (default 256K)" },
	{ "max-handshake", SIZE(max_handshake, 1024, 1ull << 24), RELOADS, "BYTES",
	  "largest handshake message the proxy reads (default 256K: the largest legal ClientHello is 131,396 bytes); a larger one goes to the server unread, and the server's answer decides" },
	{ "max-pending", SIZE(max_pending, 65536, 1ull << 32), RELOADS,
	  "BYTES", "ciphertext per direction waiting for decryption; beyond it records go uninspected (default 16M)" },
	{ "max-pending-total", SIZE(max_pending_total, 1ull << 20, 1ull << 40), RESTART,
	  "BYTES", "the same over all connections together (default 256M)" },
	{ "session-cache", STR(session_cache_arg), RESTART, "N|redis://HOST[:PORT][/DB]",
	  "sessions (IDs and tickets) kept to decrypt resumed handshakes, 0 turns it off (default 20000); or a Redis "
	  "shared by several proxies (with a local cache of 20000 in front; needs --session-key)",
	  check_session_cache },
	{ "session-key", STR(session_key), RESTART, "FILE",
	  "the 256-bit key (64 hex digits) that seals sessions in Redis; the same on every node" },
	{ "session-lifetime", U64(session_lifetime_s, 1, 86400), RESTART, "SEC",
	  "how long a cached session is kept (default 7200)" },
	{ "workers", U64(workers, 1, 64), RESTART, "N|auto",
	  "io_uring loops (threads) per virtual server, each with its own listener on the same port "
	  "(SO_REUSEPORT), ring and engine, sharing the session cache; auto: one per core (default 1)", NULL,
	  online_cores },
};

_Static_assert(PXY_ARRAY_LEN(opts) <= PXY_CONFIG_MAX_OPTS, "PXY_CONFIG_MAX_OPTS is too small");

static void set_err(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

static const struct opt_def *find_opt(const char *name)
{
	for (size_t i = 0; i < PXY_ARRAY_LEN(opts); i++)
		if (!strcmp(opts[i].name, name))
			return &opts[i];
	return NULL;
}

static int set_opt(struct pxy_config *c, const struct opt_def *o, const char *val, char *err, size_t n,
		   const char *where)
{
	char **sp;
	uint64_t *up, num = 0;
	char why[400];
	int bad;

	switch (o->kind) {
	case K_STR:
		if (!val || !*val) {
			set_err(err, n, "%s--%s needs a value", where, o->name);
			return PXY_E_USAGE;
		}
		break;
	case K_BOOL:
		if (!val || !strcmp(val, "yes") || !strcmp(val, "true") || !strcmp(val, "on") || !strcmp(val, "1")) {
			num = 1;
		} else if (!strcmp(val, "no") || !strcmp(val, "false") || !strcmp(val, "off") || !strcmp(val, "0")) {
			num = 0;
		} else {
			set_err(err, n, "%s--%s: '%s' is not yes or no", where, o->name, val);
			return PXY_E_USAGE;
		}
		break;
	case K_U64:
	case K_SIZE:
		if (o->keeps_auto && val && !strcmp(val, "auto")) {
			*(uint64_t *)((char *)c + o->off) = PXY_CONFIG_AUTO;
			return PXY_OK;
		}
		if (o->auto_value && val && !strcmp(val, "auto")) {
			uint64_t v = o->auto_value();

			snprintf(why, sizeof(why), "%llu", (unsigned long long)(v > o->max ? o->max : v));
			val = why;
		}
		bad = o->kind == K_U64 ? pxy_parse_u64(val, o->min, o->max, &num) : pxy_parse_size(val, o->min, o->max, &num);
		if (bad) {
			set_err(err, n, "%s--%s: '%s' is not a %s between %llu and %llu", where, o->name, val ? val : "",
				o->kind == K_SIZE ? "size" : "number", (unsigned long long)o->min,
				(unsigned long long)o->max);
			return PXY_E_USAGE;
		}
		break;
	}
	/* checked here, so that a config file's error names its line */
	if (o->check && o->check(val, num, why, sizeof(why)) < 0) {
		set_err(err, n, "%s--%s: %s", where, o->name, why);
		return PXY_E_USAGE;
	}
	if (o->off == offsetof(struct pxy_config, max_conns))
		c->max_conns_given = 1;
	if (o->kind == K_STR) {
		sp = (char **)((char *)c + o->off);
		free(*sp);
		*sp = strdup(val);
		return *sp ? PXY_OK : PXY_E_NOMEM;
	}
	up = (uint64_t *)((char *)c + o->off);
	*up = num;
	return PXY_OK;
}

struct ini_ctx {
	struct pxy_config *c;
	const char *path;
	char *err;
	size_t err_len;
	int failed;
	FILE *fp;
	int line; /* Debian's libinih does not pass line numbers: the reader counts them */
	const char *want; /* NULL: apply [proxy] and list the vservers; else apply [vserver want] only */
};

/* settings of the whole process, not of one virtual server */
static int process_wide(const char *name)
{
	return !strcmp(name, "log") || !strcmp(name, "log-level") || !strncmp(name, "key-listen", 10);
}

static int vserver_name_ok(const char *s)
{
	if (!*s || strlen(s) > 32)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      *s == '_'))
			return 0;
	return 1;
}

static int note_vserver(struct ini_ctx *x, const char *name, int lineno)
{
	struct pxy_config *c = x->c;

	for (int i = 0; i < c->n_vservers; i++)
		if (!strcmp(c->vservers[i], name))
			return 0;
	if (c->n_vservers == PXY_MAX_VSERVERS) {
		set_err(x->err, x->err_len, "%s:%d: more than %d [vserver] sections", x->path, lineno, PXY_MAX_VSERVERS);
		return -1;
	}
	if (!(c->vservers[c->n_vservers] = strdup(name))) {
		set_err(x->err, x->err_len, "out of memory");
		return -1;
	}
	c->n_vservers++;
	return 0;
}

static char *ini_read_line(char *str, int num, void *stream)
{
	struct ini_ctx *x = stream;
	char *r = fgets(str, num, x->fp);

	if (r)
		x->line++;
	return r;
}

static int ini_on_value(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *x = user;
	const struct opt_def *o;
	char where[512];
	int lineno = x->line, apply;

	if (x->failed)
		return 0;
	if (!*section) {
		set_err(x->err, x->err_len, "%s:%d: '%s' is outside a section (settings go under [proxy])", x->path,
			lineno, name);
		x->failed = 1;
		return 0;
	}
	if (!strncmp(section, "vserver", 7) && (section[7] == ' ' || !section[7])) {
		const char *vs = section + 7;

		while (*vs == ' ')
			vs++;
		if (!vserver_name_ok(vs)) {
			set_err(x->err, x->err_len,
				"%s:%d: [%s]: a virtual server needs a name of letters, digits, '-' and '_' "
				"(up to 32): [vserver NAME]",
				x->path, lineno, section);
			x->failed = 1;
			return 0;
		}
		if (!x->want && note_vserver(x, vs, lineno) < 0) {
			x->failed = 1;
			return 0;
		}
		if (process_wide(name)) {
			set_err(x->err, x->err_len, "%s:%d: '%s' is set for the whole process: put it in [proxy]", x->path,
				lineno, name);
			x->failed = 1;
			return 0;
		}
		/* another section's (or the first pass): its name is checked now, its value when it is parsed */
		apply = x->want && !strcmp(vs, x->want);
	} else if (!strcmp(section, "proxy")) {
		apply = !x->want; /* the second pass applies the [vserver] section only */
	} else {
		set_err(x->err, x->err_len, "%s:%d: unknown section [%s] (expected [proxy] or [vserver NAME])", x->path,
			lineno, section);
		x->failed = 1;
		return 0;
	}
	o = find_opt(name);
	if (!o || !strcmp(name, "config")) {
		set_err(x->err, x->err_len, "%s:%d: unknown setting '%s'", x->path, lineno, name);
		x->failed = 1;
		return 0;
	}
	if (!apply)
		return 1;
	snprintf(where, sizeof(where), "%s:%d: ", x->path, lineno);
	if (set_opt(x->c, o, value, x->err, x->err_len, where) < 0) {
		x->failed = 1;
		return 0;
	}
	x->c->lines[o - opts] = lineno;
	return 1;
}

static int load_file(struct pxy_config *c, const char *path, const char *want, char *err, size_t n)
{
	struct ini_ctx x = { c, path, err, n, 0, NULL, 0, want };
	int r;

	x.fp = fopen(path, "re");
	if (!x.fp) {
		set_err(err, n, "cannot read config %s: %s", path, strerror(errno));
		return PXY_E_FILE;
	}
	r = ini_parse_stream(ini_read_line, &x, ini_on_value, &x);
	fclose(x.fp);
	if (x.failed)
		return PXY_E_CONFIG;
	if (r > 0) {
		set_err(err, n, "%s:%d: syntax error (expected 'name = value' or '[section]')", path, r);
		return PXY_E_CONFIG;
	}
	return PXY_OK;
}

static void defaults(struct pxy_config *c)
{
	memset(c, 0, sizeof(*c));
	c->engine_threads = PXY_CONFIG_AUTO;
	c->engine_timeout_ms = 10000;
	c->connect_timeout_ms = 5000;
	c->drain_timeout_ms = 20000;
	c->handshake_timeout_ms = 10000;
	c->idle_timeout_ms = 300000;
	c->key_wait_ms = 5000;
	c->key_ttl_s = 60;
	c->key_max = 100000;
	c->max_conns = 16384;
	c->buffers = 256;
	c->buffer_size = 65536;
	c->max_queue = 256 * 1024;
	c->max_handshake = 256 * 1024;
	c->max_pending = 16 * 1024 * 1024;
	c->max_pending_total = 256 * 1024 * 1024;
	c->session_cache = 20000;
	c->session_lifetime_s = 7200;
	c->workers = 1;
}

static int parse(struct pxy_config *c, int argc, char **argv, const char *vserver, char *err, size_t n)
{
	struct option lopts[PXY_ARRAY_LEN(opts) + 5];
	size_t i;
	int r, ch, idx;

	defaults(c);
	for (i = 0; i < PXY_ARRAY_LEN(opts); i++)
		lopts[i] = (struct option){ opts[i].name, opts[i].kind == K_BOOL ? optional_argument : required_argument,
					    NULL, 1000 + (int)i };
	lopts[i++] = (struct option){ "config", required_argument, NULL, 'c' };
	lopts[i++] = (struct option){ "check-config", required_argument, NULL, 'C' };
	lopts[i++] = (struct option){ "help", no_argument, NULL, 'h' };
	lopts[i++] = (struct option){ "version", no_argument, NULL, 'V' };
	lopts[i] = (struct option){ NULL, 0, NULL, 0 };

	/* pass 1: find --config, so the command line can override the file */
	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, ":hV", lopts, &idx)) != -1) {
		if (ch == 'c' || ch == 'C') {
			free(c->config_file);
			c->config_file = strdup(optarg);
			c->check |= ch == 'C';
		}
	}
	if (c->config_file && (r = load_file(c, c->config_file, NULL, err, n)) < 0)
		return r;
	if (vserver) {
		int found = 0;

		for (int v = 0; v < c->n_vservers; v++)
			found |= !strcmp(c->vservers[v], vserver);
		if (!found) {
			set_err(err, n, "%s: no [vserver %s] section", c->config_file ? c->config_file : "--config", vserver);
			return PXY_E_USAGE;
		}
		if (!(c->vserver = strdup(vserver)))
			return PXY_E_NOMEM;
		if ((r = load_file(c, c->config_file, vserver, err, n)) < 0)
			return r;
	}

	/* pass 2: everything */
	optind = 1;
	while ((ch = getopt_long(argc, argv, ":hV", lopts, &idx)) != -1) {
		switch (ch) {
		case 'h': c->help = 1; break;
		case 'V': c->version = 1; break;
		case 'c':
		case 'C':
			break;
		case ':':
			set_err(err, n, "option %s needs a value", argv[optind - 1]);
			return PXY_E_USAGE;
		case '?':
			set_err(err, n, "unknown option %s (see --help)", argv[optind - 1]);
			return PXY_E_USAGE;
		default:
			if (ch >= 1000 && ch < 1000 + (int)PXY_ARRAY_LEN(opts)) {
				if ((r = set_opt(c, &opts[ch - 1000], optarg, err, n, "")) < 0)
					return r;
				c->lines[ch - 1000] = -1;
			}
			break;
		}
	}
	if (optind < argc) {
		set_err(err, n, "unexpected argument '%s' (see --help)", argv[optind]);
		return PXY_E_USAGE;
	}
	if (c->help || c->version)
		return PXY_OK;
	if (c->n_vservers && !vserver)
		return PXY_OK; /* each virtual server is checked on its own */
	if (!c->listen || !c->backend || !c->cert || !c->key) {
		set_err(err, n, "%s%s--listen, --backend, --cert and --key are required (see --help)",
			c->config_file ? c->config_file : "", c->config_file ? ": " : "");
		return PXY_E_USAGE;
	}
	/* --session-cache: a size, or Redis (with the default local size in front) */
	free(c->session_redis);
	c->session_redis = NULL;
	if (c->session_cache_arg && !strncmp(c->session_cache_arg, "redis://", 8)) {
		c->session_redis = strdup(c->session_cache_arg);
		if (!c->session_redis)
			return PXY_E_NOMEM;
		if (!c->session_key) {
			set_err(err, n, "%s%s--session-cache %s needs --session-key (the key sealing the sessions in Redis)",
				c->config_file ? c->config_file : "", c->config_file ? ": " : "", c->session_cache_arg);
			return PXY_E_USAGE;
		}
	} else if (c->session_cache_arg) {
		pxy_parse_u64(c->session_cache_arg, 0, 1u << 24, &c->session_cache); /* checked */
	}
	/* the one check that spans two settings */
	if (c->max_queue < c->buffer_size) {
		set_err(err, n, "%s%s--max-queue (%llu) must be at least --buffer-size (%llu)",
			c->config_file ? c->config_file : "", c->config_file ? ": " : "",
			(unsigned long long)c->max_queue, (unsigned long long)c->buffer_size);
		return PXY_E_USAGE;
	}
	return PXY_OK;
}

int pxy_config_parse(struct pxy_config *c, int argc, char **argv, char *err, size_t n)
{
	return parse(c, argc, argv, NULL, err, n);
}

int pxy_config_parse_vserver(struct pxy_config *c, int argc, char **argv, const char *name, char *err, size_t n)
{
	return parse(c, argc, argv, name, err, n);
}

void pxy_config_free(struct pxy_config *c)
{
	for (size_t i = 0; i < PXY_ARRAY_LEN(opts); i++)
		if (opts[i].kind == K_STR)
			free(*(char **)((char *)c + opts[i].off));
	free(c->config_file);
	free(c->session_redis);
	free(c->vserver);
	for (int i = 0; i < c->n_vservers; i++)
		free(c->vservers[i]);
	memset(c, 0, sizeof(*c));
}

const char *pxy_config_where(const struct pxy_config *c, const char *name, char *buf, size_t n)
{
	const struct opt_def *o = find_opt(name);
	int line = o ? c->lines[o - opts] : 0;

	if (line <= 0 || !c->config_file)
		return "";
	snprintf(buf, n, "%s:%d: ", c->config_file, line);
	return buf;
}

static void print_opts(FILE *out, const struct pxy_config *c, int which);

void pxy_config_print(FILE *out, const struct pxy_config *c)
{
	if (c->vserver)
		fprintf(out, "; proxyssl %s: the effective settings of virtual server %s%s%s\n[vserver %s]\n", PXY_VERSION,
			c->vserver, c->config_file ? " in " : "", c->config_file ? c->config_file : "", c->vserver);
	else
		fprintf(out, "; proxyssl %s: the effective settings%s%s\n[proxy]\n", PXY_VERSION,
			c->config_file ? " of " : "", c->config_file ? c->config_file : "");
	print_opts(out, c, c->vserver ? 0 : -1);
}

void pxy_config_print_shared(FILE *out, const struct pxy_config *c)
{
	fprintf(out, "; proxyssl %s: the settings of the whole process%s%s\n[proxy]\n", PXY_VERSION,
		c->config_file ? " in " : "", c->config_file ? c->config_file : "");
	print_opts(out, c, 1);
}

/* An option's value as text (numbers written into buf); NULL when it is not set. */
static const char *opt_text(const struct pxy_config *c, const struct opt_def *o, char *buf, size_t n)
{
	uint64_t v;

	if (o->kind == K_STR)
		return *(char *const *)((const char *)c + o->off);
	v = *(const uint64_t *)((const char *)c + o->off);
	if (o->kind == K_BOOL)
		return v ? "yes" : "no";
	if (o->keeps_auto && v == PXY_CONFIG_AUTO)
		return "auto";
	snprintf(buf, n, "%llu", (unsigned long long)v);
	return buf;
}

/* every option (which < 0), only the process-wide ones (1), or all but those (0) */
static void print_opts(FILE *out, const struct pxy_config *c, int which)
{
	for (size_t i = 0; i < PXY_ARRAY_LEN(opts); i++) {
		const struct opt_def *o = &opts[i];
		char val[32], from[600];
		const char *v;

		if (which >= 0 && process_wide(o->name) != which)
			continue;
		v = opt_text(c, o, val, sizeof(val));
		if (c->lines[i] > 0)
			snprintf(from, sizeof(from), "%s:%d", c->config_file, c->lines[i]);
		else
			snprintf(from, sizeof(from), "%s", c->lines[i] < 0 ? "command line" : "default");
		/* an inline comment: libinih strips " ;..." from values */
		if (v)
			fprintf(out, "%-18s = %-30s ; %s\n", o->name, v, from);
		else
			fprintf(out, "; %-16s   (not set)\n", o->name);
	}
}

void pxy_config_restart_only_diff(const struct pxy_config *old, const struct pxy_config *new,
				  void (*changed)(const char *name, const char *was, const char *now))
{
	for (size_t i = 0; i < PXY_ARRAY_LEN(opts); i++) {
		const struct opt_def *o = &opts[i];
		char bo[32], bn[32];
		const char *so, *sn;

		if (o->reload != RESTART)
			continue;
		so = opt_text(old, o, bo, sizeof(bo));
		sn = opt_text(new, o, bn, sizeof(bn));
		if ((so || sn) && (!so || !sn || strcmp(so, sn)))
			changed(o->name, so ? so : "unset", sn ? sn : "unset");
	}
}

void pxy_config_usage(FILE *out)
{
	fprintf(out, "usage: proxyssl --listen ADDR:PORT --backend ADDR:PORT --cert FILE --key FILE [options]\n\n"
		     "Transparent Proxy SSL: forwards TLS unchanged, holds the server's RSA key,\n"
		     "and decrypts both directions of RSA key-exchange sessions for inspection.\n\n"
		     "options:\n");
	for (size_t i = 0; i < PXY_ARRAY_LEN(opts); i++) {
		char left[64];
		snprintf(left, sizeof(left), opts[i].kind == K_BOOL ? "--%s%s" : "--%s %s", opts[i].name, opts[i].arg);
		fprintf(out, "  %-28s %s\n", left, opts[i].help);
	}
	fprintf(out, "  %-28s %s\n", "--config FILE", "read settings from an INI file ([proxy] section, same names)");
	fprintf(out, "  %-28s %s\n", "--check-config FILE",
		"check FILE (and the options given with it) as a start would, print the effective settings, exit");
	fprintf(out, "  %-28s %s\n", "--help", "this text");
	fprintf(out, "  %-28s %s\n", "--version", "print the version");
	fprintf(out, "\nsignals: SIGUSR1 logs counters; SIGHUP reloads the config file, certificates and keys;\n"
		     "SIGINT/SIGTERM stop accepting and drain (a second one resets).\n"
		     "exit status: 0 stopped cleanly, 1 runtime failure, 2 bad options or files.\n");
}
