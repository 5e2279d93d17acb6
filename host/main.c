/* proxyssl: command line, start-up checks, then the io_uring loop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "io/loop.h"
#include "proxyssl/engine.h"
#include "sink/sinks.h"
#include "tls/cert.h"
#include "util/addr.h"
#include "util/log.h"
#include "util/util.h"

#ifndef PXY_VERSION
#define PXY_VERSION "0.1.0"
#endif

static int usage_error(const char *msg)
{
	fprintf(stderr, "proxyssl: %s\n", msg);
	return 2;
}

#define MAX_IDENTITIES 64

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

int main(int argc, char **argv)
{
	struct pxy_config cfg;
	static struct pxy_identity ids[MAX_IDENTITIES];
	int nids = 0;
	struct pxy_loop_cfg lc;
	struct pxy_engine *engine = NULL;
	struct pxy_loop *loop = NULL;
	struct pxy_engine_params ep;
	struct pxy_rsa_priv priv;
	sigset_t mask;
	char err[1024] = "";
	char fp[96], addr[64], why[512];
	int keylog_fd = -1, connlog_fd = -1, r, status = 1;

	if (pxy_config_parse(&cfg, argc, argv, err, sizeof(err)) < 0) {
		pxy_config_free(&cfg);
		return usage_error(err);
	}
	if (cfg.help) {
		pxy_config_usage(stdout);
		pxy_config_free(&cfg);
		return 0;
	}
	if (cfg.version) {
		printf("proxyssl %s (engines: %s)\n", PXY_VERSION, pxy_engine_names());
		pxy_config_free(&cfg);
		return 0;
	}

	/* everything a user can get wrong is checked before listening: exit 2 */
	memset(&lc, 0, sizeof(lc));
	if (resolve(&cfg, "listen", cfg.listen, 0, &lc.listen_addr, &lc.listen_len, err, sizeof(err)) < 0 ||
	    resolve(&cfg, "backend", cfg.backend, 1, &lc.backend_addr, &lc.backend_len, err, sizeof(err)) < 0 ||
	    (cfg.metrics &&
	     resolve(&cfg, "metrics", cfg.metrics, 0, &lc.metrics_addr, &lc.metrics_len, err, sizeof(err)) < 0)) {
		status = usage_error(err);
		goto out;
	}
	nids = load_identities(cfg.cert, cfg.key, ids, why, sizeof(why));
	if (nids < 0) {
		char w[600];

		nids = 0;
		snprintf(err, sizeof(err), "%s%s", pxy_config_where(&cfg, "cert", w, sizeof(w)), why);
		status = usage_error(err);
		goto out;
	}
	if (cfg.check) {
		/* what a start would open, without creating anything */
		if ((cfg.keylog && check_out_file(&cfg, "keylog", cfg.keylog, err, sizeof(err)) < 0) ||
		    (cfg.conn_log && check_out_file(&cfg, "conn-log", cfg.conn_log, err, sizeof(err)) < 0) ||
		    (cfg.log && check_out_file(&cfg, "log", cfg.log, err, sizeof(err)) < 0)) {
			status = usage_error(err);
			goto out;
		}
		if (cfg.plaintext_dir && access(cfg.plaintext_dir, W_OK | X_OK) < 0 &&
		    check_out_file(&cfg, "plaintext-dir", cfg.plaintext_dir, err, sizeof(err)) < 0) {
			status = usage_error(err);
			goto out;
		}
		pxy_config_print(stdout, &cfg);
		status = 0;
		goto out;
	}
	if (cfg.plaintext_dir) {
		struct stat st;

		if (stat(cfg.plaintext_dir, &st) < 0 && errno == ENOENT)
			mkdir(cfg.plaintext_dir, 0700);
		if (stat(cfg.plaintext_dir, &st) < 0 || !S_ISDIR(st.st_mode) || access(cfg.plaintext_dir, W_OK | X_OK)) {
			snprintf(err, sizeof(err), "--plaintext-dir %s: not a writable directory", cfg.plaintext_dir);
			status = usage_error(err);
			goto out;
		}
	}
	if (cfg.keylog) {
		keylog_fd = open(cfg.keylog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (keylog_fd < 0) {
			snprintf(err, sizeof(err), "--keylog %s: %s", cfg.keylog, strerror(errno));
			status = usage_error(err);
			goto out;
		}
	}
	if (cfg.conn_log) {
		connlog_fd = open(cfg.conn_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (connlog_fd < 0) {
			snprintf(err, sizeof(err), "--conn-log %s: %s", cfg.conn_log, strerror(errno));
			status = usage_error(err);
			goto out;
		}
	}
	if ((r = pxy_log_open(cfg.log)) < 0) {
		snprintf(err, sizeof(err), "--log %s: %s", cfg.log, strerror(-r));
		status = usage_error(err);
		goto out;
	}
	if (cfg.log_level)
		pxy_log_set_level(!strcmp(cfg.log_level, "error")  ? PXY_LOG_ERROR
				  : !strcmp(cfg.log_level, "warn") ? PXY_LOG_WARN
				  : !strcmp(cfg.log_level, "info") ? PXY_LOG_INFO
								   : PXY_LOG_DEBUG);

	/* signals arrive through the loop's signalfd; block them before threads start */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);

	/* two descriptors per connection, two more with per-connection plaintext
	 * files: take what the hard limit allows */
	{
		struct rlimit rl;
		uint64_t per = cfg.plaintext_dir ? 4 : 2;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
			if (rl.rlim_cur != RLIM_INFINITY && cfg.max_conns * per + 64 > rl.rlim_cur) {
				uint64_t fit = rl.rlim_cur > 64 + 32 * per ? (rl.rlim_cur - 64) / per : 32;

				pxy_warn("--max-conns %llu needs %llu file descriptors, the limit is %llu: using %llu",
					 (unsigned long long)cfg.max_conns, (unsigned long long)(cfg.max_conns * per + 64),
					 (unsigned long long)rl.rlim_cur, (unsigned long long)fit);
				cfg.max_conns = fit;
			}
		}
	}

	memset(&ep, 0, sizeof(ep));
	ep.threads = (unsigned)cfg.engine_threads;
	ep.max_jobs = 65536;
	ep.batch = (unsigned)cfg.engine_batch;
	ep.run_timeout_ms = (unsigned)cfg.engine_timeout_ms;
	ep.device = (unsigned)cfg.device;
	ep.xclbin = cfg.xclbin;
	ep.why = why;
	ep.why_len = sizeof(why);
	why[0] = '\0';
	r = pxy_engine_open(cfg.engine ? cfg.engine : "auto", &ep, &engine);
	if (r < 0) {
		pxy_err_log("cannot start engine %s: %s%s%s", cfg.engine ? cfg.engine : "auto", pxy_err_str(r),
			    why[0] ? ": " : "", why);
		goto out;
	}
	if (why[0])
		pxy_info("engine auto chose %s", why);
	for (int i = 0; i < nids; i++) {
		r = pxy_identity_rsa_priv(&ids[i], &priv);
		if (r == PXY_OK) {
			r = engine->ops->key_load(engine, &priv, &ids[i].key_id);
			pxy_rsa_priv_free(&priv);
		}
		if (r < 0) {
			pxy_err_log("engine %s cannot load the RSA key of %s: %s", engine->ops->name, ids[i].info.subject,
				    pxy_err_str(r));
			goto out;
		}
	}

	lc.buffers = (unsigned)cfg.buffers;
	lc.buffer_size = (unsigned)cfg.buffer_size;
	lc.max_queue = cfg.max_queue;
	lc.connect_timeout_ms = (unsigned)cfg.connect_timeout_ms;
	lc.drain_timeout_ms = (unsigned)cfg.drain_timeout_ms;
	lc.max_conns = (unsigned)cfg.max_conns;
	lc.session_cache = (unsigned)cfg.session_cache;
	lc.session_lifetime_s = (unsigned)cfg.session_lifetime_s;
	lc.tap.identity = &ids[0];
	lc.tap.identities = ids;
	lc.tap.n_identities = (size_t)nids;
	lc.tap.engine = engine;
	lc.tap.max_hs_msg = cfg.max_handshake;
	lc.tap.max_pending = cfg.max_pending;
	lc.tap.max_pending_total = cfg.max_pending_total;
	if (cfg.passthrough)
		pxy_passthrough_parse(cfg.passthrough, &lc.tap.passthrough, why, sizeof(why)); /* checked at parse */
	lc.plaintext_dir = cfg.plaintext_dir;
	lc.keylog_fd = keylog_fd;
	lc.connlog_fd = connlog_fd;
	lc.engine_name = engine->ops->name;
	lc.expected = &ids[0].info;
	if (pxy_loop_new(&lc, &loop) < 0)
		goto out;

	{
		struct sockaddr_storage bound;
		socklen_t blen;
		char laddr[64];

		pxy_loop_listen_addr(loop, &bound, &blen);
		pxy_addr_str((struct sockaddr *)&bound, laddr, sizeof(laddr));
		pxy_addr_str((struct sockaddr *)&lc.backend_addr, addr, sizeof(addr));
		char sizes[MAX_IDENTITIES * 11] = "";
		size_t o = 0;

		for (int i = 0; i < nids && o < sizeof(sizes); i++)
			o += (size_t)snprintf(sizes + o, sizeof(sizes) - o, "%sRSA-%u", i ? "," : "", ids[i].bits);
		pxy_info("proxyssl %s listening on %s, backend %s, engine %s (%u threads), %s key%s", PXY_VERSION, laddr,
			 addr, engine->ops->name, ep.threads, sizes, nids > 1 ? "s" : "");
		if (pxy_loop_metrics_addr(loop, &bound, &blen)) {
			pxy_addr_str((struct sockaddr *)&bound, laddr, sizeof(laddr));
			pxy_info("metrics on http://%s/metrics", laddr);
		}
	}
	for (int i = 0; i < nids; i++) {
		pxy_cert_fp_str(&ids[i].info, fp);
		pxy_info("expecting server certificate subject=%s serial=%s sha256=%s", ids[i].info.subject,
			 ids[i].info.serial, fp);
	}
	status = pxy_loop_run(loop) < 0 ? 1 : 0;
out:
	pxy_loop_free(loop);
	pxy_engine_close(engine);
	for (int i = 0; i < nids; i++)
		pxy_identity_free(&ids[i]);
	if (keylog_fd >= 0)
		close(keylog_fd);
	if (connlog_fd >= 0)
		close(connlog_fd);
	pxy_config_free(&cfg);
	pxy_log_close();
	return status;
}
