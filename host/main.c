/* proxyssl: command line, start-up checks, then the io_uring loop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "io/loop.h"
#include "io/redis.h"
#include "proxyssl/engine.h"
#include "sink/sinks.h"
#include "tls/cert.h"
#include "tls/suites.h"
#include "io/keylisten.h"
#include "tls/keystore.h"
#include "tls/sessions.h"
#include "util/addr.h"
#include "util/log.h"
#include "util/ct.h"
#include "util/util.h"
#include "proxyssl/kernel_abi.h"

#ifndef PXY_VERSION
#define PXY_VERSION "0.1.0"
#endif

static int usage_error(const char *msg)
{
	fprintf(stderr, "proxyssl: %s\n", msg);
	return 2;
}

#define MAX_IDENTITIES PXY_MAX_IDENTITIES

/*
 * --cert A,B,... and --key A,B,...: the pairs, in order, each checked (the key
 * is the certificate's), no certificate twice. Returns how many, or -1 with
 * err filled.
 */
static int load_identities(const char *certs, const char *keys, struct pxy_identity *ids, char *err, size_t n)
{
	char *cl = strdup(certs), *kl = strdup(keys), *cs = NULL, *ks = NULL, *c, *k;
	int count = 0, ret = -1;

	if (!cl || !kl) {
		snprintf(err, n, "out of memory");
		goto out;
	}
	c = strtok_r(cl, ",", &cs);
	k = strtok_r(kl, ",", &ks);
	while (c || k) {
		if (!c || !k) {
			snprintf(err, n, "--cert and --key must name as many files each (a key for every certificate)");
			goto out;
		}
		if (count == MAX_IDENTITIES) {
			snprintf(err, n, "--cert: more than %d certificates", MAX_IDENTITIES);
			goto out;
		}
		if (pxy_identity_load(&ids[count], c, k, err, n) < 0)
			goto out;
		for (int i = 0; i < count; i++)
			if (!memcmp(ids[i].info.sha256, ids[count].info.sha256, 32)) {
				snprintf(err, n, "--cert %s: the same certificate is given twice", c);
				count++;
				goto out;
			}
		count++;
		c = strtok_r(NULL, ",", &cs);
		k = strtok_r(NULL, ",", &ks);
	}
	ret = count;
out:
	if (ret < 0)
		for (int i = 0; i < count; i++)
			pxy_identity_free(&ids[i]);
	free(cl);
	free(kl);
	return ret;
}

static int resolve(const struct pxy_config *cfg, const char *what, const char *s, unsigned min_port,
		   struct sockaddr_storage *ss, socklen_t *len, char *err, size_t n)
{
	char why[512], w[600];

	if (pxy_addr_resolve(s, min_port, ss, len, why, sizeof(why)) < 0) {
		snprintf(err, n, "%s--%s %s", pxy_config_where(cfg, what, w, sizeof(w)), what, why);
		return -1;
	}
	return 0;
}

/* --backend ADDR:PORT, or "original" (transparent mode: no address). */
static int resolve_backend(const struct pxy_config *cfg, struct pxy_loop_cfg *lc, char *err, size_t n)
{
	lc->backend_original = !strcmp(cfg->backend, "original");
	if (lc->backend_original) {
		memset(&lc->backend_addr, 0, sizeof(lc->backend_addr));
		lc->backend_len = 0;
		return 0;
	}
	return resolve(cfg, "backend", cfg->backend, 1, &lc->backend_addr, &lc->backend_len, err, n);
}

static void backend_str(const struct pxy_loop_cfg *lc, char *out, size_t n)
{
	if (lc->backend_original)
		snprintf(out, n, "original destination");
	else
		pxy_addr_str((const struct sockaddr *)&lc->backend_addr, out, n);
}

/* A file the proxy will append to: its directory must exist and be writable. */
static int check_out_file(const struct pxy_config *cfg, const char *what, const char *path, char *err, size_t n)
{
	char dir[4096], w[600], *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	if (access(path, W_OK) == 0 || (errno == ENOENT && access(dir, W_OK | X_OK) == 0))
		return 0;
	snprintf(err, n, "%s--%s %s: %s", pxy_config_where(cfg, what, w, sizeof(w)), what, path, strerror(errno));
	return -1;
}

/* What runs (one per virtual server): the configuration, the engine, the identity sets and their keys, the loop. */
struct app {
	int argc;
	char **argv;
	const char *vs;               /* [vserver NAME]; NULL: the file has none */
	const char *name;             /* its loop, in log lines and ids: NAME, NAME.W for worker W, wW; NULL: the only one */
	char name_buf[48];
	int worker;                   /* 0 .. workers-1 within its virtual server */
	int leader;                   /* the index of its worker 0 */
	uint64_t conns;               /* its share of --max-conns */
	struct pxy_sessions *own_sessions; /* worker 0: the cache its workers share */
	struct pxy_keystore *keys;         /* secrets servers forward (--key-source), this loop's own */
	struct pxy_config cfg;        /* in force */
	struct pxy_engine *engine;
	struct pxy_idset *current;    /* the app's reference to the set in force */
	struct pxy_redis *redis;      /* the shared session store, if any */
	unsigned key_refs[PXY_K_MAX_KEYS]; /* live sets holding each engine key slot */
	struct pxy_loop_cfg lc;
	struct pxy_loop *loop;
	int keylog_fd, connlog_fd;
	int ctl_w;                    /* several loops: the write end of the loop's control pipe */
	int done_fd;                  /* several loops: told when the loop thread ends */
	pthread_t thread;
	int started, status;
};

/* FILE.ext -> FILE-wN.ext (or FILE-wN): worker N's own capture */
static int worker_path(char **path, int worker)
{
	const char *p = *path, *slash, *dot;
	char *q;
	size_t stem;

	if (!p)
		return 0;
	slash = strrchr(p, '/');
	dot = strrchr(slash ? slash : p, '.');
	stem = dot && dot != (slash ? slash + 1 : p) ? (size_t)(dot - p) : strlen(p);
	if (asprintf(&q, "%.*s-w%d%s", (int)stem, p, worker, p + stem) < 0)
		return -1;
	free(*path);
	*path = q;
	return 0;
}

/* With several workers each writes its own captures (one file, or FIFO, per worker). */
static int worker_captures(const struct app *a, struct pxy_config *c)
{
	if (c->workers < 2)
		return 0;
	return worker_path(&c->pcap, a->worker) | worker_path(&c->pcap_tls, a->worker) |
	       worker_path(&c->pcap_feed, a->worker);
}

/* The configuration of a, as at start: the virtual server's own when it is one. */
static int app_parse(const struct app *a, struct pxy_config *c, char *err, size_t n)
{
	return a->vs ? pxy_config_parse_vserver(c, a->argc, a->argv, a->vs, err, n)
		       : pxy_config_parse(c, a->argc, a->argv, err, n);
}

/* The last connection under a set has ended (or the loop let it go): keys no set uses leave the engine. */
static void idset_release(struct pxy_idset *s)
{
	struct app *a = s->owner;

	for (size_t i = 0; i < s->n; i++) {
		uint32_t k = s->ids[i].key_id;

		if (a->engine && k < PXY_K_MAX_KEYS && a->key_refs[k] && --a->key_refs[k] == 0) {
			if (a->engine->ops->key_unload)
				a->engine->ops->key_unload(a->engine, k);
			pxy_info("released the key of %s: no connection uses it any more", s->ids[i].info.subject);
		}
		pxy_identity_free(&s->ids[i]);
	}
	free(s);
}

/* The certificates and keys of cfg, checked (err names the file and line on failure). */
static struct pxy_idset *idset_load(struct app *a, const struct pxy_config *cfg, char *err, size_t n)
{
	struct pxy_idset *s = calloc(1, sizeof(*s));
	char why[1024], w[600];
	int nids;

	if (!s) {
		snprintf(err, n, "out of memory");
		return NULL;
	}
	nids = load_identities(cfg->cert, cfg->key, s->ids, why, sizeof(why));
	if (nids < 0) {
		snprintf(err, n, "%s%s", pxy_config_where(cfg, "cert", w, sizeof(w)), why);
		free(s);
		return NULL;
	}
	for (int i = 0; i < nids; i++)
		if (!s->ids[i].rsa && !cfg->key_source && !cfg->key_listen) {
			snprintf(err, n, "%s--key: the key of %s is %s, but RSA key exchange needs an RSA key (a "
				 "certificate with another key is only for sessions whose servers forward their keys: "
				 "--key-source)",
				 pxy_config_where(cfg, "key", w, sizeof(w)), s->ids[i].info.subject, s->ids[i].key_type);
			for (int j = 0; j < nids; j++)
				pxy_identity_free(&s->ids[j]);
			free(s);
			return NULL;
		}
	s->n = (size_t)nids;
	s->refs = 1;
	s->owner = a;
	for (size_t i = 0; i < s->n; i++)
		s->ids[i].key_id = UINT32_MAX; /* no engine slot yet */
	return s;
}

/* A set not (or not wholly) given keys: its slots go back, its identities are freed. */
static void idset_discard(struct app *a, struct pxy_idset *s)
{
	s->release = NULL;
	for (size_t i = 0; i < s->n; i++) {
		uint32_t k = s->ids[i].key_id;

		if (k < PXY_K_MAX_KEYS && a->key_refs[k] && --a->key_refs[k] == 0 && a->engine->ops->key_unload)
			a->engine->ops->key_unload(a->engine, k);
		pxy_identity_free(&s->ids[i]);
	}
	free(s);
}

/* Give every identity of s its engine slot: the one it has in the set in force, else a new one. */
static int idset_keys(struct app *a, struct pxy_idset *s, char *err, size_t n)
{
	for (size_t i = 0; i < s->n; i++) {
		struct pxy_identity *id = &s->ids[i];
		struct pxy_rsa_priv priv;
		int r;

		if (!id->rsa)
			continue; /* no key for the engine: the certificate alone is judged */
		for (size_t j = 0; a->current && j < a->current->n && id->key_id == UINT32_MAX; j++)
			if (!memcmp(a->current->ids[j].info.sha256, id->info.sha256, 32) &&
			    a->current->ids[j].key_id < PXY_K_MAX_KEYS)
				id->key_id = a->current->ids[j].key_id;
		if (id->key_id == UINT32_MAX) {
			r = pxy_identity_rsa_priv(id, &priv);
			if (r == PXY_OK) {
				r = a->engine->ops->key_load(a->engine, &priv, &id->key_id);
				pxy_rsa_priv_free(&priv);
			}
			if (r < 0) {
				id->key_id = UINT32_MAX;
				snprintf(err, n, "engine %s cannot load the RSA key of %s: %s%s", a->engine->ops->name,
					 id->info.subject, pxy_err_str(r),
					 r == PXY_E_LIMIT ? " (its key table is full: a restart frees the old keys)" : "");
				return -1;
			}
		}
		a->key_refs[id->key_id]++;
	}
	s->release = idset_release;
	return 0;
}

/* Which record ciphers this process decrypts: the card's, the software engine's, and those the
 * suite table knows but this OpenSSL lacks (their suites are rejected as unsupported-suite). */
static void log_ciphers(void)
{
	char card[256] = "", sw[512] = "", missing[512] = "";
	const char *why = NULL, *w;

	for (uint8_t b = 1; b < PXY_BULK__COUNT; b++) {
		const struct pxy_bulk_desc *d = pxy_bulk_desc(b);
		char *dst = !pxy_bulk_available(b, &w) ? missing : d->device ? card : sw;
		size_t cap = dst == card ? sizeof(card) : sizeof(sw), n = strlen(dst);

		if (dst == missing)
			why = why ? why : w;
		snprintf(dst + n, cap - n, "%s%s", n ? ", " : "", d->name);
	}
	pxy_info("ciphers: on the card's kernels %s; in software %s%s%s%s%s", card, sw, missing[0] ? "; missing " : "",
		 missing, missing[0] ? ": " : "", missing[0] ? why : "");
}

static void log_identities(const struct pxy_idset *s)
{
	char fp[96];

	for (size_t i = 0; i < s->n; i++) {
		pxy_cert_fp_str(&s->ids[i].info, fp);
		pxy_info("expecting server certificate subject=%s serial=%s sha256=%s", s->ids[i].info.subject,
			 s->ids[i].info.serial, fp);
	}
}

static void key_sizes(const struct pxy_idset *s, char *out, size_t n)
{
	size_t o = 0;

	out[0] = 0;
	for (size_t i = 0; i < s->n && o < n; i++)
		o += (size_t)snprintf(out + o, n - o, "%s%s-%u", i ? "," : "", s->ids[i].key_type, s->ids[i].bits);
}

static void apply_log_level(const struct pxy_config *cfg)
{
	pxy_log_set_level(!cfg->log_level || !strcmp(cfg->log_level, "info") ? PXY_LOG_INFO
			  : !strcmp(cfg->log_level, "error")                 ? PXY_LOG_ERROR
			  : !strcmp(cfg->log_level, "warn")                  ? PXY_LOG_WARN
									     : PXY_LOG_DEBUG);
}

/* The output paths: plaintext directory made if missing; key log and connection log opened. */
static int open_outputs(const struct pxy_config *cfg, int *keylog_fd, int *connlog_fd, char *err, size_t n)
{
	char w[600];

	*keylog_fd = *connlog_fd = -1;
	if (cfg->plaintext_dir) {
		struct stat st;

		if (stat(cfg->plaintext_dir, &st) < 0 && errno == ENOENT)
			mkdir(cfg->plaintext_dir, 0700);
		if (stat(cfg->plaintext_dir, &st) < 0 || !S_ISDIR(st.st_mode) || access(cfg->plaintext_dir, W_OK | X_OK)) {
			snprintf(err, n, "%s--plaintext-dir %s: not a writable directory",
				 pxy_config_where(cfg, "plaintext-dir", w, sizeof(w)), cfg->plaintext_dir);
			return -1;
		}
	}
	if (cfg->keylog) {
		*keylog_fd = open(cfg->keylog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (*keylog_fd < 0) {
			snprintf(err, n, "%s--keylog %s: %s", pxy_config_where(cfg, "keylog", w, sizeof(w)), cfg->keylog,
				 strerror(errno));
			return -1;
		}
	}
	for (int i = 0; i < 2; i++) {
		const char *path = i ? cfg->pcap_tls : cfg->pcap, *what = i ? "pcap-tls" : "pcap";

		if (path && check_out_file(cfg, what, path, err, n) < 0)
			return -1;
	}
	if (cfg->pcap_feed) {
		struct stat st;

		if (stat(cfg->pcap_feed, &st) < 0 && errno == ENOENT)
			mkfifo(cfg->pcap_feed, 0600);
		if (stat(cfg->pcap_feed, &st) < 0 || !S_ISFIFO(st.st_mode)) {
			snprintf(err, n, "%s--pcap-feed %s: not a FIFO (and cannot be made one)",
				 pxy_config_where(cfg, "pcap-feed", w, sizeof(w)), cfg->pcap_feed);
			return -1;
		}
	}
	if (cfg->conn_log) {
		*connlog_fd = open(cfg->conn_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (*connlog_fd < 0) {
			snprintf(err, n, "%s--conn-log %s: %s", pxy_config_where(cfg, "conn-log", w, sizeof(w)),
				 cfg->conn_log, strerror(errno));
			if (*keylog_fd >= 0)
				close(*keylog_fd);
			*keylog_fd = -1;
			return -1;
		}
	}
	return 0;
}

/* A setting only a restart changes: a reload that changes it says so and keeps the running value. */
static void warn_restart_only(const char *name, const char *was, const char *now)
{
	pxy_warn("reload: --%s changed (%s -> %s): that takes a restart; keeping %s", name, was, now, was);
}

/* reloads of several virtual servers, one at a time: the parser (getopt) is not reentrant */
static pthread_mutex_t reload_mu = PTHREAD_MUTEX_INITIALIZER;

static int on_reload_locked(void *ctx, struct pxy_loop_cfg *next);

static int on_reload(void *ctx, struct pxy_loop_cfg *next)
{
	int r;

	pthread_mutex_lock(&reload_mu);
	r = on_reload_locked(ctx, next);
	pthread_mutex_unlock(&reload_mu);
	return r;
}

/*
 * SIGHUP (from the loop): read the configuration again (the --config file and
 * the command line, as at start) and the certificate and key files; new
 * connections use it, open ones keep theirs. Any error: refused, logged, the
 * running configuration stays.
 */
static int on_reload_locked(void *ctx, struct pxy_loop_cfg *next)
{
	struct app *a = ctx;
	struct pxy_config ncfg;
	struct pxy_idset *set = NULL;
	char err[1024] = "", why[512], addr[64], sizes[PXY_MAX_IDENTITIES * 20];
	int kfd = -1, cfd = -1, r;

	if (app_parse(a, &ncfg, err, sizeof(err)) < 0)
		goto refuse;
	if (worker_captures(a, &ncfg) < 0) {
		snprintf(err, sizeof(err), "out of memory");
		goto refuse;
	}
	if (resolve_backend(&ncfg, next, err, sizeof(err)) < 0)
		goto refuse;
	if (!(set = idset_load(a, &ncfg, err, sizeof(err))))
		goto refuse;
	if (open_outputs(&ncfg, &kfd, &cfd, err, sizeof(err)) < 0)
		goto refuse;
	/* several virtual servers: the log is the process's, reopened once before the loops are told */
	if (!a->name && ncfg.log && (r = pxy_log_open(ncfg.log)) < 0) { /* the only loop */
		snprintf(err, sizeof(err), "--log %s: %s", ncfg.log, strerror(-r));
		goto refuse;
	}
	if (idset_keys(a, set, err, sizeof(err)) < 0)
		goto refuse;

	pxy_config_restart_only_diff(&a->cfg, &ncfg, warn_restart_only);
	if (!a->name && !ncfg.log && a->cfg.log)
		pxy_warn("reload: --log removed: that takes a restart; still logging to %s", a->cfg.log);
	apply_log_level(&ncfg);
	next->connect_timeout_ms = (unsigned)ncfg.connect_timeout_ms;
	next->drain_timeout_ms = (unsigned)ncfg.drain_timeout_ms;
	next->handshake_timeout_ms = (unsigned)ncfg.handshake_timeout_ms;
	next->idle_timeout_ms = (unsigned)ncfg.idle_timeout_ms;
	next->tap.identity = &set->ids[0];
	next->tap.identities = set->ids;
	next->tap.n_identities = set->n;
	next->tap.max_hs_msg = ncfg.max_handshake;
	next->tap.max_pending = ncfg.max_pending;
	next->tap.passthrough = 0;
	if (ncfg.passthrough)
		pxy_passthrough_parse(ncfg.passthrough, &next->tap.passthrough, why, sizeof(why)); /* checked at parse */
	next->plaintext_dir = ncfg.plaintext_dir;
	next->keylog_fd = kfd;
	next->connlog_fd = cfd;
	next->expected = &set->ids[0].info;
	next->idset = pxy_idset_get(set); /* the loop's reference */
	pxy_idset_put(a->current);
	a->current = set;
	/* the loop copies what it keeps (the plaintext directory) right after this returns */
	pxy_config_free(&a->cfg);
	a->cfg = ncfg;

	backend_str(next, addr, sizeof(addr));
	key_sizes(set, sizes, sizeof(sizes));
	pxy_info("reloaded%s%s: backend %s, %s key%s, passthrough %s", a->cfg.config_file ? " " : "",
		 a->cfg.config_file ? a->cfg.config_file : "", addr, sizes, set->n > 1 ? "s" : "",
		 a->cfg.passthrough ? a->cfg.passthrough : "none");
	log_identities(set);
	return 0;
refuse:
	pxy_err_log("reload refused: %s; keeping the running configuration", err);
	if (kfd >= 0)
		close(kfd);
	if (cfd >= 0)
		close(cfd);
	if (set)
		idset_discard(a, set);
	pxy_config_free(&ncfg);
	return -1;
}

/*
 * Everything a user can get wrong in one virtual server's settings, checked
 * before anything listens: addresses, certificates and keys, the shared
 * session store. 0, or -1 with err filled (exit status 2).
 */
static int app_check(struct app *a, char *err, size_t n)
{
	struct pxy_config *cfg = &a->cfg;
	struct pxy_loop_cfg *lc = &a->lc;

	memset(lc, 0, sizeof(*lc));
	lc->ctl_fd = -1;
	if (resolve(cfg, "listen", cfg->listen, 0, &lc->listen_addr, &lc->listen_len, err, n) < 0 ||
	    resolve_backend(cfg, lc, err, n) < 0 ||
	    (cfg->metrics && resolve(cfg, "metrics", cfg->metrics, 0, &lc->metrics_addr, &lc->metrics_len, err, n) < 0))
		return -1;
	if (!(a->current = idset_load(a, cfg, err, n)))
		return -1;
	if (cfg->session_redis) {
		uint8_t k[PXY_REDIS_KEY_LEN];
		char w[600], why[600];
		int r;

		if (pxy_redis_key_load(cfg->session_key, k, why, sizeof(why)) < 0) {
			snprintf(err, n, "%s%s", pxy_config_where(cfg, "session-key", w, sizeof(w)), why);
			return -1;
		}
		/* the thread connects on the first request: Redis may come up later */
		r = pxy_redis_new(cfg->session_redis, k, &a->redis, why, sizeof(why));
		pxy_wipe(k, sizeof(k));
		if (r < 0) {
			snprintf(err, n, "%s--session-cache %s", pxy_config_where(cfg, "session-cache", w, sizeof(w)), why);
			return -1;
		}
	}
	return 0;
}

/* --check-config: what a start would open, without creating anything. */
static int app_check_outputs(const struct app *a, char *err, size_t n)
{
	const struct pxy_config *cfg = &a->cfg;

	if ((cfg->keylog && check_out_file(cfg, "keylog", cfg->keylog, err, n) < 0) ||
	    (cfg->conn_log && check_out_file(cfg, "conn-log", cfg->conn_log, err, n) < 0) ||
	    (cfg->log && check_out_file(cfg, "log", cfg->log, err, n) < 0))
		return -1;
	if (cfg->plaintext_dir && access(cfg->plaintext_dir, W_OK | X_OK) < 0 &&
	    check_out_file(cfg, "plaintext-dir", cfg->plaintext_dir, err, n) < 0)
		return -1;
	return 0;
}

/* Two virtual servers must not listen on one address or write one capture. */
static int vservers_distinct(struct app *apps, int napps, char *err, size_t n)
{
	static const struct {
		const char *name;
		size_t off;
	} own[] = {
		{ "listen", offsetof(struct pxy_config, listen) },     { "metrics", offsetof(struct pxy_config, metrics) },
		{ "pcap", offsetof(struct pxy_config, pcap) },         { "pcap-tls", offsetof(struct pxy_config, pcap_tls) },
		{ "pcap-feed", offsetof(struct pxy_config, pcap_feed) },
	};

	for (int i = 0; i < napps; i++)
		for (int j = 0; j < i; j++) {
			/* the workers of one virtual server share its settings: compare the first of each */
			if (apps[i].worker || apps[j].worker)
				continue;
			for (size_t k = 0; k < PXY_ARRAY_LEN(own); k++) {
				const char *x = *(char *const *)((const char *)&apps[i].cfg + own[k].off);
				const char *y = *(char *const *)((const char *)&apps[j].cfg + own[k].off);
				size_t xl = x ? strlen(x) : 0;
				char w[600];

				/* port 0: the kernel picks a port for each */
				if (x && y && !strcmp(x, y) &&
				    !(k < 2 && xl >= 2 && !strcmp(x + xl - 2, ":0"))) {
					snprintf(err, n, "%s[vserver %s]: --%s %s is also [vserver %s]'s: each virtual server needs its own",
						 pxy_config_where(&apps[i].cfg, own[k].name, w, sizeof(w)), apps[i].vs,
						 own[k].name, x, apps[j].vs);
					return -1;
				}
			}
		}
	return 0;
}

/*
 * --engine-threads auto: the cores that the io loops do not take, less one
 * for the kernel's network work and everything else on the machine. None to
 * spare (2 cores, 1 loop; or --workers auto): 0, jobs run on the loops'
 * own threads, which on such a machine beats handing every record to a
 * thread that competes with the loop for the same cores.
 */
static unsigned engine_threads(const struct pxy_config *c, unsigned loops, int log)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n;

	if (c->engine_threads != PXY_CONFIG_AUTO)
		return (unsigned)c->engine_threads;
	if (cores < 1)
		cores = 1;
	n = (unsigned long)cores > loops + 1u ? (unsigned)cores - loops - 1u : 0;
	if (n > 64)
		n = 64;
	if (log)
		pxy_info("engine threads auto: %u (%ld online cores, %u io loop%s%s)", n, cores, loops, loops > 1 ? "s" : "",
			 n ? "" : ": none to spare, jobs run on the io loop's thread");
	return n;
}

/* The engine, the keys in it, the outputs and the loop of one virtual server (its listener bound). */
static int app_start(struct app *a, unsigned max_conns, unsigned loops)
{
	struct pxy_config *cfg = &a->cfg;
	struct pxy_loop_cfg *lc = &a->lc;
	struct pxy_engine_params ep;
	char err[1024] = "", why[512] = "", addr[64];
	int r;

	if (worker_captures(a, cfg) < 0) {
		pxy_err_log("out of memory");
		return 1;
	}
	if (open_outputs(cfg, &a->keylog_fd, &a->connlog_fd, err, sizeof(err)) < 0) {
		pxy_err_log("%s", err);
		return 2;
	}
	memset(&ep, 0, sizeof(ep));
	ep.threads = engine_threads(cfg, loops, a->worker == 0);
	ep.max_jobs = 65536;
	ep.batch = (unsigned)cfg->engine_batch;
	ep.run_timeout_ms = (unsigned)cfg->engine_timeout_ms;
	ep.device = (unsigned)cfg->device;
	ep.xclbin = cfg->xclbin;
	ep.emu_timing = cfg->emu_timing;
	ep.why = why;
	ep.why_len = sizeof(why);
	r = pxy_engine_open(cfg->engine ? cfg->engine : "auto", &ep, &a->engine);
	if (r < 0) {
		pxy_err_log("cannot start engine %s: %s%s%s", cfg->engine ? cfg->engine : "auto", pxy_err_str(r),
			    why[0] ? ": " : "", why);
		return 1;
	}
	if (why[0])
		pxy_info("engine auto chose %s", why);
	if (idset_keys(a, a->current, err, sizeof(err)) < 0) {
		pxy_err_log("%s", err);
		return 1;
	}

	lc->buffers = (unsigned)cfg->buffers;
	lc->buffer_size = (unsigned)cfg->buffer_size;
	lc->max_queue = cfg->max_queue;
	lc->connect_timeout_ms = (unsigned)cfg->connect_timeout_ms;
	lc->drain_timeout_ms = (unsigned)cfg->drain_timeout_ms;
	lc->handshake_timeout_ms = (unsigned)cfg->handshake_timeout_ms;
	lc->idle_timeout_ms = (unsigned)cfg->idle_timeout_ms;
	lc->max_conns = max_conns;
	lc->session_cache = (unsigned)cfg->session_cache;
	lc->session_lifetime_s = (unsigned)cfg->session_lifetime_s;
	lc->redis = a->redis;
	lc->idset = a->current;
	if (cfg->key_source || cfg->key_listen) {
		const char *path = NULL;

		/* each loop follows the key log itself (a store is one thread's); the key listener hands
		 * its lines to every loop's store */
		if ((cfg->key_source && pxy_key_source_parse(cfg->key_source, &path, err, sizeof(err)) < 0) ||
		    !(a->keys = pxy_keystore_new(path, (uint32_t)cfg->key_ttl_s, (uint32_t)cfg->key_max, err,
						 sizeof(err)))) {
			pxy_err_log("--key-source: %s", err);
			return 1;
		}
		if (cfg->key_source && !path && !cfg->session_redis) {
			pxy_err_log("--key-source shared needs the shared session store (--session-cache redis://...)");
			return 2;
		}
		pxy_keystore_refresh(a->keys, pxy_now_ns());
		pxy_info("key source %s%s%s%s: ECDHE, DHE and TLS 1.3 sessions decrypted with the secrets servers forward "
			 "(wait %llu ms%s, kept %llu s, at most %llu)", path ? path : "",
			 path && cfg->key_listen ? " and " : "", cfg->key_listen ? "the key listener" : "",
			 cfg->session_redis ? (path || cfg->key_listen ? ", shared through the session store"
								 : "the shared session store")
					    : "",
			 (unsigned long long)cfg->key_wait_ms,
			 cfg->require_keys ? ", required: refused without them" : ", forwarding never waits",
			 (unsigned long long)cfg->key_ttl_s, (unsigned long long)cfg->key_max);
	} else if (cfg->require_keys) {
		pxy_warn("--require-keys has no effect without --key-source or --key-listen");
	}
	lc->tap.keys = a->keys;
	lc->tap.key_wait_ms = (uint32_t)cfg->key_wait_ms;
	lc->tap.require_keys = cfg->require_keys && (cfg->key_source || cfg->key_listen);
	lc->tap.identity = &a->current->ids[0];
	lc->tap.identities = a->current->ids;
	lc->tap.n_identities = a->current->n;
	lc->tap.engine = a->engine;
	lc->tap.max_hs_msg = cfg->max_handshake;
	lc->tap.max_pending = cfg->max_pending;
	lc->tap.max_pending_total = cfg->max_pending_total;
	if (cfg->passthrough)
		pxy_passthrough_parse(cfg->passthrough, &lc->tap.passthrough, why, sizeof(why)); /* checked at parse */
	lc->plaintext_dir = cfg->plaintext_dir;
	lc->pcap = cfg->pcap;
	lc->pcap_tls = cfg->pcap_tls;
	lc->pcap_rotate = cfg->pcap_rotate;
	lc->pcap_feed = cfg->pcap_feed;
	lc->keylog_fd = a->keylog_fd;
	lc->connlog_fd = a->connlog_fd;
	lc->engine_name = a->engine->ops->name;
	lc->expected = &a->current->ids[0].info;
	lc->reload = on_reload;
	lc->reload_ctx = a;
	lc->name = a->name;
	r = pxy_loop_new(lc, &a->loop);
	lc->ctl_fd = -1; /* the loop owns it now (or closed it) */
	/* the loop owns the output descriptors now (or closed them) */
	a->keylog_fd = a->connlog_fd = -1;
	if (r < 0)
		return 1;

	{
		struct sockaddr_storage bound;
		socklen_t blen;
		char laddr[64], sizes[MAX_IDENTITIES * 20];

		pxy_loop_listen_addr(a->loop, &bound, &blen);
		pxy_addr_str((struct sockaddr *)&bound, laddr, sizeof(laddr));
		backend_str(lc, addr, sizeof(addr));
		key_sizes(a->current, sizes, sizeof(sizes));
		pxy_info("proxyssl %s listening on %s, backend %s, engine %s (%u threads), %s key%s", PXY_VERSION, laddr,
			 addr, a->engine->ops->name, ep.threads, sizes, a->current->n > 1 ? "s" : "");
		if (pxy_loop_metrics_addr(a->loop, &bound, &blen)) {
			pxy_addr_str((struct sockaddr *)&bound, laddr, sizeof(laddr));
			pxy_info("metrics on http://%s/metrics", laddr);
		}
		if (a->redis)
			pxy_info("session cache: %llu local, shared through %s", (unsigned long long)cfg->session_cache,
				 cfg->session_redis);
		log_ciphers();
	}
	log_identities(a->current);
	return 0;
}

static void app_free(struct app *a)
{
	pxy_loop_free(a->loop); /* its references to the sets go */
	a->loop = NULL;
	if (a->current) {
		if (a->current->release)
			pxy_idset_put(a->current);
		else
			idset_discard(a, a->current);
		a->current = NULL;
	}
	pxy_engine_close(a->engine);
	pxy_redis_free(a->redis);
	if (a->keylog_fd >= 0)
		close(a->keylog_fd);
	if (a->connlog_fd >= 0)
		close(a->connlog_fd);
	if (a->ctl_w >= 0)
		close(a->ctl_w);
	if (a->lc.ctl_fd >= 0)
		close(a->lc.ctl_fd);
	pxy_config_free(&a->cfg);
}

/* One io loop (a virtual server's, or one of its workers) in its own thread; its log lines carry its name. */
static void *loop_thread(void *arg)
{
	struct app *a = arg;
	uint64_t one = 1;

	pxy_log_set_tag(a->name);
	a->status = pxy_loop_run(a->loop) < 0 ? 1 : 0;
	pxy_tap_thread_end(); /* this thread's pools of record jobs and buffers */
	if (write(a->done_fd, &one, sizeof(one)) < 0)
		pxy_err_log("cannot tell the main thread that the loop ended: %s", strerror(errno));
	return NULL;
}

static void tell_loops(struct app *apps, int napps, int signo)
{
	uint8_t b = (uint8_t)signo;

	for (int i = 0; i < napps; i++)
		if (apps[i].ctl_w >= 0 && write(apps[i].ctl_w, &b, 1) < 0)
			pxy_err_log("[%s]: cannot pass signal %d on: %s", apps[i].name, signo, strerror(errno));
}

/*
 * Several io loops (virtual servers, workers): each runs in its own thread; this thread
 * takes the signals and passes them on (SIGHUP: the log is reopened here
 * first, and a [vserver] added or removed is named: that takes a restart).
 * Returns the exit status once every loop has ended.
 */
static int run_loops(struct app *apps, int napps, int done_fd)
{
	sigset_t mask;
	int sfd, ended = 0, status = 0;

	pxy_loop_signal_set(&mask);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		pxy_err_log("signalfd: %s", strerror(errno));
		return 1;
	}
	for (int i = 0; i < napps; i++) {
		apps[i].done_fd = done_fd;
		if (pthread_create(&apps[i].thread, NULL, loop_thread, &apps[i]) != 0) {
			pxy_err_log("[%s]: cannot start its thread", apps[i].name);
			tell_loops(apps, i, SIGTERM);
			napps = i;
			status = 1;
			break;
		}
		apps[i].started = 1;
	}
	while (ended < napps) {
		struct pollfd pf[2] = { { sfd, POLLIN, 0 }, { done_fd, POLLIN, 0 } };
		struct signalfd_siginfo si;
		uint64_t v;

		if (poll(pf, 2, -1) < 0)
			continue;
		if ((pf[1].revents & POLLIN) && read(done_fd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
			ended += (int)v;
			/* a loop that ends on its own (a fatal error) takes the others with it */
			if (ended < napps && !status)
				for (int i = 0; i < napps; i++)
					if (apps[i].status) {
						pxy_err_log("[%s] stopped: stopping the others", apps[i].name);
						tell_loops(apps, napps, SIGTERM);
						status = 1;
						break;
					}
		}
		if (!(pf[0].revents & POLLIN) || read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
			continue;
		if (si.ssi_signo == SIGHUP) {
			struct pxy_config ncfg;
			char err[1024];
			int r;

			pthread_mutex_lock(&reload_mu);
			r = pxy_config_parse(&ncfg, apps[0].argc, apps[0].argv, err, sizeof(err));
			pthread_mutex_unlock(&reload_mu);
			if (r == 0) {
				if (ncfg.log) {
					r = pxy_log_open(ncfg.log);
					if (r < 0)
						pxy_err_log("reload: --log %s: %s; still logging where it did", ncfg.log,
							    strerror(-r));
				}
				for (int i = 0; i < ncfg.n_vservers; i++) {
					int known = 0;

					for (int j = 0; j < napps; j++)
						known |= apps[j].vs && !strcmp(ncfg.vservers[i], apps[j].vs);
					if (!known)
						pxy_warn("reload: [vserver %s] is new: adding a virtual server takes a restart",
							 ncfg.vservers[i]);
				}
			}
			pxy_config_free(&ncfg);
		}
		tell_loops(apps, napps, (int)si.ssi_signo);
	}
	for (int i = 0; i < napps; i++)
		if (apps[i].started) {
			pthread_join(apps[i].thread, NULL);
			status |= apps[i].status;
		}
	close(sfd);
	return status;
}

#define MAX_LOOPS 64

int main(int argc, char **argv)
{
	static struct app apps[MAX_LOOPS];
	static struct pxy_loop *loops[MAX_LOOPS];
	struct pxy_config base;
	sigset_t mask;
	char err[1024] = "";
	int napps, status = 1, done_fd = -1;
	uint64_t total_conns = 0;
	struct pxy_keylisten *klisten = NULL;

	/* private keys and master secrets never reach a core file */
	{
		struct rlimit nocore = { 0, 0 };

		setrlimit(RLIMIT_CORE, &nocore);
	}
	if (pxy_config_parse(&base, argc, argv, err, sizeof(err)) < 0) {
		pxy_config_free(&base);
		return usage_error(err);
	}
	if (base.help) {
		pxy_config_usage(stdout);
		pxy_config_free(&base);
		return 0;
	}
	if (base.version) {
		printf("proxyssl %s (engines: %s)\n", PXY_VERSION, pxy_engine_names());
		pxy_config_free(&base);
		return 0;
	}

	/* a group of apps per [vserver NAME] (or one for the whole configuration): one app per worker */
	napps = 0;
	for (int v = 0; v < (base.n_vservers ? base.n_vservers : 1); v++) {
		int lead = napps, nw = 1;

		for (int w = 0; w < nw; w++) {
			struct app *a = &apps[napps];

			if (napps == MAX_LOOPS) {
				snprintf(err, sizeof(err), "more than %d io loops (virtual servers times --workers)", MAX_LOOPS);
				status = usage_error(err);
				goto out;
			}
			a->argc = argc;
			a->argv = argv;
			a->keylog_fd = a->connlog_fd = a->ctl_w = a->done_fd = a->lc.ctl_fd = -1;
			a->vs = base.n_vservers ? base.vservers[v] : NULL;
			a->name = a->vs;
			a->worker = w;
			a->leader = lead;
			napps++;
			if (app_parse(a, &a->cfg, err, sizeof(err)) < 0) {
				status = usage_error(err);
				goto out;
			}
			if (w == 0)
				nw = (int)a->cfg.workers;
		}
		for (int w = 0; nw > 1 && w < nw; w++) {
			struct app *a = &apps[lead + w];

			if (a->vs)
				snprintf(a->name_buf, sizeof(a->name_buf), "%s.%d", a->vs, w);
			else
				snprintf(a->name_buf, sizeof(a->name_buf), "w%d", w);
			a->name = a->name_buf;
		}
	}
	for (int i = 0; i < napps; i++) {
		struct app *a = &apps[i];
		const struct pxy_config *c = &a->cfg;

		if (app_check(a, err, sizeof(err)) < 0) {
			status = usage_error(err);
			goto out;
		}
		/* --max-conns is the virtual server's: shared out by its workers */
		a->conns = (c->max_conns + c->workers - 1) / c->workers;
		total_conns += a->conns;
	}
	if (vservers_distinct(apps, napps, err, sizeof(err)) < 0) {
		status = usage_error(err);
		goto out;
	}
	if (base.check) {
		for (int i = 0; i < napps; i++)
			if (app_check_outputs(&apps[i], err, sizeof(err)) < 0) {
				status = usage_error(err);
				goto out;
			}
		if (base.n_vservers) {
			pxy_config_print_shared(stdout, &apps[0].cfg);
			for (int i = 0; i < napps; i++) {
				if (apps[i].worker)
					continue;
				fputc('\n', stdout);
				pxy_config_print(stdout, &apps[i].cfg);
			}
		} else {
			pxy_config_print(stdout, &apps[0].cfg);
		}
		status = 0;
		goto out;
	}
	{
		int r = pxy_log_open(apps[0].cfg.log);

		if (r < 0) {
			snprintf(err, sizeof(err), "--log %s: %s", apps[0].cfg.log, strerror(-r));
			status = usage_error(err);
			goto out;
		}
	}
	apply_log_level(&apps[0].cfg);

	/* signals arrive through a signalfd (the loop's, or this thread's with
	 * several virtual servers); block them before threads start */
	signal(SIGPIPE, SIG_IGN);
	pxy_loop_signal_set(&mask);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);

	/* two descriptors per connection, two more with per-connection plaintext
	 * files: take what the hard limit allows, shared out by --max-conns */
	{
		struct rlimit rl;
		uint64_t need = 64;

		for (int i = 0; i < napps; i++)
			need += apps[i].conns * (apps[i].cfg.plaintext_dir ? 4 : 2) + (napps > 1 ? 16 : 0);
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
			if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur) {
				for (int i = 0; i < napps; i++) {
					struct pxy_config *c = &apps[i].cfg;
					uint64_t per = c->plaintext_dir ? 4 : 2, want = apps[i].conns;
					uint64_t room = rl.rlim_cur > 64 + 16 * (uint64_t)napps ? rl.rlim_cur - 64 - 16 * (uint64_t)napps : 0;
					uint64_t fit = room * want / total_conns / per;

					if (fit < 32)
						fit = 32;
					pxy_log_set_tag(apps[i].name);
					/* the default is sized to the machine without a word; a limit asked for is warned about */
					if (c->max_conns_given)
						pxy_warn("--max-conns %llu needs %llu file descriptors, the limit is %llu%s: using %llu",
							 (unsigned long long)want, (unsigned long long)(want * per + 64),
							 (unsigned long long)rl.rlim_cur,
							 napps > 1 ? " for all the io loops" : "", (unsigned long long)fit);
					else
						pxy_debug("max-conns: %llu by default, %llu file descriptors allow %llu",
							  (unsigned long long)want, (unsigned long long)rl.rlim_cur,
							  (unsigned long long)fit);
					apps[i].conns = fit;
				}
				pxy_log_set_tag(NULL);
			}
		}
	}

	/* the workers of a virtual server share its session cache (with Redis, each has its own in front of it) */
	for (int i = 0; i < napps; i++) {
		struct app *a = &apps[i], *lead = &apps[a->leader];

		if (lead->cfg.workers < 2 || !lead->cfg.session_cache || lead->cfg.session_redis)
			continue;
		if (a->worker == 0 &&
		    !(a->own_sessions = pxy_sessions_new(a->cfg.session_cache, (uint32_t)a->cfg.session_lifetime_s))) {
			pxy_err_log("out of memory for the session cache");
			goto out;
		}
		a->lc.sessions = lead->own_sessions;
	}
	if (napps > 1 && (done_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		pxy_err_log("eventfd: %s", strerror(errno));
		goto out;
	}
	for (int i = 0; i < napps; i++) {
		struct app *a = &apps[i];
		int r;

		if (a->worker > 0) {
			/* the leader's address, port 0 resolved: one port for all */
			pxy_loop_listen_addr(apps[a->leader].loop, &a->lc.listen_addr, &a->lc.listen_len);
			a->lc.metrics_len = 0; /* the leader serves /metrics for all of them */
		}
		a->lc.reuseport = a->cfg.workers > 1;
		if (a->worker == 0 && a->cfg.workers > 1) {
			a->lc.siblings = &loops[i];
			a->lc.n_siblings = (unsigned)a->cfg.workers;
		}
		if (napps > 1) {
			int p[2];

			if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
				pxy_err_log("pipe: %s", strerror(errno));
				goto out;
			}
			a->lc.ctl_fd = p[0];
			a->ctl_w = p[1];
		}
		pxy_log_set_tag(a->name);
		r = app_start(a, (unsigned)a->conns, (unsigned)napps);
		pxy_log_set_tag(NULL);
		if (r) {
			status = r;
			goto out;
		}
		loops[i] = a->loop;
	}
	if (base.key_listen) {
		struct pxy_keystore *stores[MAX_LOOPS];

		for (int i = 0; i < napps; i++)
			stores[i] = apps[i].keys;
		if (!base.key_listen_cert || !base.key_listen_key || !base.key_listen_ca) {
			pxy_err_log("--key-listen needs --key-listen-cert, --key-listen-key and --key-listen-ca (forwarders "
				    "authenticate with a certificate that CA signed)");
			status = 2;
			goto out;
		}
		klisten = pxy_keylisten_start(base.key_listen, base.key_listen_cert, base.key_listen_key,
					      base.key_listen_ca, stores, (size_t)napps, err, sizeof(err));
		if (!klisten) {
			pxy_err_log("%s", err);
			status = 1;
			goto out;
		}
		pxy_info("key listener on %s: forwarders stream key log lines over TLS with a certificate from %s",
			 pxy_keylisten_addr(klisten), base.key_listen_ca);
	}
	if (napps > 1) {
		char names[MAX_LOOPS * 52] = "";
		size_t o = 0;

		for (int i = 0; i < napps && o < sizeof(names); i++)
			o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", i ? ", " : "", apps[i].name);
		if (base.n_vservers)
			pxy_info("%d virtual servers, %d io loops: %s", base.n_vservers, napps, names);
		else
			pxy_info("%d workers: %s", napps, names);
		status = run_loops(apps, napps, done_fd);
	} else {
		status = pxy_loop_run(apps[0].loop) < 0 ? 1 : 0;
	}
out:
	pxy_keylisten_stop(klisten); /* before the stores it hands lines to */
	for (int i = 0; i < napps; i++)
		app_free(&apps[i]);
	for (int i = 0; i < napps; i++) { /* once no loop uses them */
		pxy_sessions_free(apps[i].own_sessions);
		pxy_keystore_free(apps[i].keys);
	}
	pxy_tap_thread_end();
	if (done_fd >= 0)
		close(done_fd);
	pxy_config_free(&base);
	pxy_log_close();
	return status;
}
