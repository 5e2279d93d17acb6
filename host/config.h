/*
 * Configuration: command line (getopt_long) and an INI file (libinih).
 * The file is read first; options on the command line override it. A file
 * may hold several virtual servers: [proxy] is what they share, each
 * [vserver NAME] section adds or overrides its own settings.
 */
#ifndef PXY_CONFIG_H
#define PXY_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PXY_CONFIG_MAX_OPTS 64
/* a number option set to "auto" that is decided later (--engine-threads: by the io loops the process runs) */
#define PXY_CONFIG_AUTO UINT64_MAX
#define PXY_MAX_VSERVERS 16

struct pxy_config {
	char *listen;
	char *backend;
	char *cert;
	char *key;
	char *engine;
	char *xclbin;
	char *emu_timing;
	char *keylog;
	char *conn_log;
	char *metrics;
	char *session_cache_arg; /* --session-cache as given: N or redis://... */
	char *session_redis;     /* derived: the redis URL, or NULL */
	char *session_key;
	char *pcap;
	char *pcap_tls;
	char *pcap_feed;
	uint64_t pcap_rotate;
	char *plaintext_dir;
	char *passthrough;
	char *key_source;     /* --key-source file:PATH */
	uint64_t key_wait_ms; /* --key-wait */
	uint64_t key_ttl_s;   /* --key-ttl */
	uint64_t key_max;     /* --key-max */
	uint64_t require_keys; /* --require-keys */
	char *key_listen;      /* --key-listen ADDR:PORT (process-wide) */
	char *key_listen_cert, *key_listen_key, *key_listen_ca;
	char *log;
	char *log_level;
	char *config_file;
	uint64_t engine_threads;  /* PXY_CONFIG_AUTO: decided at start from the cores and io loops */
	uint64_t engine_batch;
	uint64_t engine_timeout_ms;
	uint64_t device;
	uint64_t connect_timeout_ms;
	uint64_t drain_timeout_ms;
	uint64_t handshake_timeout_ms;
	uint64_t idle_timeout_ms;
	uint64_t max_conns;
	uint8_t max_conns_given; /* --max-conns was set (command line or file): a limit it cannot have is warned about */
	uint64_t buffers;
	uint64_t buffer_size;
	uint64_t max_queue;
	uint64_t max_handshake;
	uint64_t max_pending;
	uint64_t max_pending_total;
	uint64_t session_cache;
	uint64_t session_lifetime_s;
	uint64_t workers;
	char *vserver;             /* [vserver NAME] this configuration is for; NULL: the file has none */
	int n_vservers;            /* the [vserver NAME] sections of the file, in order */
	char *vservers[PXY_MAX_VSERVERS];
	int help, version;
	int check;                 /* --check-config: validate, print, exit */
	int lines[PXY_CONFIG_MAX_OPTS]; /* per option: the config file line that set it; 0 default, -1 command line */
};

/**
 * Parse argv (and the --config file it names). On error writes one line to
 * err and returns a negative pxy error; the caller exits with status 2.
 */
int pxy_config_parse(struct pxy_config *c, int argc, char **argv, char *err, size_t err_len);

/**
 * The configuration of one virtual server: [proxy], then its [vserver NAME]
 * section over it, then the command line over both. pxy_config_parse on a
 * file with [vserver] sections lists them in n_vservers/vservers (and does
 * not require --listen and the rest, which the sections may hold).
 */
int pxy_config_parse_vserver(struct pxy_config *c, int argc, char **argv, const char *name, char *err,
			     size_t err_len);
void pxy_config_free(struct pxy_config *c);

/**
 * Where an option's value came from, as an error prefix: "FILE:LINE: " when
 * the config file set it, "" otherwise (a default, or the command line).
 */
const char *pxy_config_where(const struct pxy_config *c, const char *name, char *buf, size_t n);

/** The effective settings as a config file ([proxy], or [vserver NAME], with every option, defaults included). */
void pxy_config_print(FILE *out, const struct pxy_config *c);
/** [proxy] with the settings of the whole process (--log, --log-level): printed ahead of the virtual servers. */
void pxy_config_print_shared(FILE *out, const struct pxy_config *c);
void pxy_config_usage(FILE *out);

/**
 * A reload from old to new: changed(name, was, now) for each setting that
 * only a restart changes whose value differs (values as text, "unset" when
 * not set), in the order of --help. --max-conns is not named: a reload keeps
 * it without a word.
 */
void pxy_config_restart_only_diff(const struct pxy_config *old, const struct pxy_config *new,
				  void (*changed)(const char *name, const char *was, const char *now));

#endif
