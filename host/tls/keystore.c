#include "tls/keystore.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/ct.h"
#include "util/follow.h"
#include "util/log.h"
#include "util/util.h"

#define LINE_MAX_LEN PXY_FOLLOW_LINE_MAX /* a key log line is < 300 bytes; longer is malformed */
#define INBOX_MAX (4u << 20)             /* bytes of handed-in lines waiting for a refresh */
#define EMPTY 0u
#define GONE UINT32_MAX
#define LOG_MALFORMED 5 /* malformed lines logged one by one, then only counted */

/* one session's secrets, by label (enum pxy_key_label) */
struct entry {
	uint8_t random[32];
	uint16_t have;            /* 1 << label for each secret here */
	uint8_t len[PXY_KL__COUNT];
	uint8_t sec[PXY_KL__COUNT][48];
	uint64_t expires;
};

struct pxy_keystore {
	/* secrets in arrival order (a ring: the oldest expires first, all having the same ttl) */
	struct entry *ring;
	uint32_t max, head, count;
	/* index: open addressing over the ring, slot = ring position + 1 (0 empty, GONE removed) */
	uint32_t *index, cap, gone;
	uint64_t ttl_ns;
	struct pxy_keystore_stats st;
	/* the followed file (path NULL: none) */
	char *path;
	struct pxy_follow follow;
	uint64_t malformed_logged;
	/* lines other threads hand in (the key listener), taken at the next refresh */
	struct pxy_keystore_remote remote;
	pthread_mutex_t in_mu;
	char *inbox;
	size_t in_len, in_cap;
	uint64_t in_dropped;
};

static uint32_t hash_random(const uint8_t r[32])
{
	uint32_t h;

	/* client randoms are random: their first bytes spread well (the GMT time of old clients sits in
	 * the first 4, so take the next 4) */
	memcpy(&h, r + 4, 4);
	return h;
}

static void index_put(struct pxy_keystore *ks, uint32_t pos)
{
	uint32_t i = hash_random(ks->ring[pos].random) & (ks->cap - 1);

	while (ks->index[i] != EMPTY && ks->index[i] != GONE)
		i = (i + 1) & (ks->cap - 1);
	if (ks->index[i] == GONE)
		ks->gone--;
	ks->index[i] = pos + 1;
}

/* the index slot of ring position pos, or UINT32_MAX */
static uint32_t index_find(const struct pxy_keystore *ks, const uint8_t random[32], uint32_t *pos)
{
	uint32_t i = hash_random(random) & (ks->cap - 1);

	for (uint32_t n = 0; n < ks->cap && ks->index[i] != EMPTY; n++, i = (i + 1) & (ks->cap - 1)) {
		if (ks->index[i] != GONE && !memcmp(ks->ring[ks->index[i] - 1].random, random, 32)) {
			*pos = ks->index[i] - 1;
			return i;
		}
	}
	return UINT32_MAX;
}

static void rebuild_index(struct pxy_keystore *ks)
{
	memset(ks->index, 0, (size_t)ks->cap * sizeof(*ks->index));
	ks->gone = 0;
	for (uint32_t k = 0; k < ks->count; k++)
		index_put(ks, (ks->head + k) % ks->max);
}

/* drop the oldest secret, wiped */
static void pop_oldest(struct pxy_keystore *ks)
{
	struct entry *e = &ks->ring[ks->head];
	uint32_t pos, slot = index_find(ks, e->random, &pos);

	if (slot != UINT32_MAX && pos == ks->head) {
		ks->index[slot] = GONE;
		ks->gone++;
	}
	pxy_wipe(e, sizeof(*e));
	ks->head = (ks->head + 1) % ks->max;
	ks->count--;
	if (ks->gone > ks->cap / 4)
		rebuild_index(ks);
}

struct pxy_keystore *pxy_keystore_new(const char *path, uint32_t ttl_s, uint32_t max, char *err, size_t err_len)
{
	struct pxy_keystore *ks = calloc(1, sizeof(*ks));

	if (!ks || max == 0)
		goto fail;
	ks->max = max;
	for (ks->cap = 16; ks->cap < 2 * max; ks->cap *= 2)
		;
	ks->ring = calloc(max, sizeof(*ks->ring));
	ks->index = calloc(ks->cap, sizeof(*ks->index));
	if (!ks->ring || !ks->index)
		goto fail;
	ks->ttl_ns = (uint64_t)ttl_s * 1000000000ull;
	pthread_mutex_init(&ks->in_mu, NULL);
	if (path && (pxy_follow_init(&ks->follow, path, "key source") < 0 || !(ks->path = strdup(path))))
		goto fail;
	return ks;
fail:
	snprintf(err, err_len, "out of memory for a key store of %u secrets", max);
	pxy_keystore_free(ks);
	return NULL;
}

void pxy_keystore_free(struct pxy_keystore *ks)
{
	if (!ks)
		return;
	if (ks->ring) {
		pxy_wipe(ks->ring, (size_t)ks->max * sizeof(*ks->ring));
		free(ks->ring);
	}
	free(ks->index);
	if (ks->path)
		pxy_follow_free(&ks->follow);
	free(ks->path);
	if (ks->inbox) {
		pxy_wipe(ks->inbox, ks->in_cap);
		free(ks->inbox);
	}
	pthread_mutex_destroy(&ks->in_mu);
	free(ks);
}

static int unhex(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i += 2) {
		int v = 0;

		for (int k = 0; k < 2; k++) {
			char c = s[i + (size_t)k];
			int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

			if (d < 0)
				return -1;
			v = v << 4 | d;
		}
		out[i / 2] = (uint8_t)v;
	}
	return 0;
}

/* RFC 9850 §3: CLIENT_RANDOM (a 48-byte master secret) and the TLS 1.3 secrets (32 or 48 bytes, by
 * the suite's hash), in enum pxy_key_label order */
static const char *const labels[PXY_KL__COUNT] = {
	"CLIENT_RANDOM", "CLIENT_EARLY_TRAFFIC_SECRET", "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
	"SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET",
	"EARLY_EXPORTER_SECRET",
};

const char *pxy_key_label_name(enum pxy_key_label l)
{
	return (unsigned)l < PXY_KL__COUNT ? labels[l] : "?";
}

static int find_label(const char *l, size_t n)
{
	for (int i = 0; i < PXY_KL__COUNT; i++)
		if (strlen(labels[i]) == n && !memcmp(labels[i], l, n))
			return i;
	return -1;
}

/* a session's secrets arrive line by line: they share one entry, which lives from the first (the same
 * secret again, from a key log written twice: the newer one) */
static void store(struct pxy_keystore *ks, const uint8_t random[32], enum pxy_key_label label, const uint8_t *secret,
		  size_t len, uint64_t now_ns)
{
	uint32_t pos;
	struct entry *e;

	if (index_find(ks, random, &pos) == UINT32_MAX) {
		if (ks->count == ks->max) {
			ks->st.expired++;
			pop_oldest(ks);
		}
		pos = (ks->head + ks->count) % ks->max;
		memcpy(ks->ring[pos].random, random, 32);
		ks->ring[pos].expires = now_ns + ks->ttl_ns;
		ks->count++;
		index_put(ks, pos);
	}
	e = &ks->ring[pos];
	memcpy(e->sec[label], secret, len);
	e->len[label] = (uint8_t)len;
	e->have |= (uint16_t)(1u << label);
}

void pxy_keystore_set_remote(struct pxy_keystore *ks, const struct pxy_keystore_remote *r)
{
	ks->remote = *r;
}

void pxy_keystore_want(struct pxy_keystore *ks, const uint8_t client_random[32], enum pxy_key_label label)
{
	if (ks && ks->remote.wanted)
		ks->remote.wanted(ks->remote.ctx, client_random, label);
}

int pxy_keystore_put_secret(struct pxy_keystore *ks, const uint8_t client_random[32], enum pxy_key_label label,
			    const uint8_t *secret, size_t len, uint64_t now_ns)
{
	if ((unsigned)label >= PXY_KL__COUNT || (label == PXY_KL_CLIENT_RANDOM ? len != 48 : len != 32 && len != 48))
		return -1;
	store(ks, client_random, label, secret, len, now_ns);
	ks->st.shared++;
	return 0;
}

int pxy_keystore_add_line(struct pxy_keystore *ks, const char *line, size_t len, uint64_t now_ns, char *why,
			  size_t why_len)
{
	const char *f[4];
	size_t fl[4], nf = 0, i = 0;
	uint8_t random[32], secret[48];
	int cr, label;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	if (len == 0 || line[0] == '#')
		return 0;
	ks->st.lines++;
	while (i < len && nf < 4) {
		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		f[nf] = line + i;
		while (i < len && line[i] != ' ')
			i++;
		fl[nf] = (size_t)(line + i - f[nf]);
		nf++;
	}
	label = nf >= 1 ? find_label(f[0], fl[0]) : -1;
	cr = label == PXY_KL_CLIENT_RANDOM;
	if (nf >= 1 && label < 0)
		return 0; /* a label it has no use for (e.g. RSA): not an error */
	if (nf != 3 || fl[1] != 64 || unhex(f[1], 64, random) < 0) {
		snprintf(why, why_len, "expected LABEL <client random: 64 hex digits> <secret in hex>");
		goto malformed;
	}
	if (cr ? fl[2] != 96 : fl[2] != 64 && fl[2] != 96) {
		snprintf(why, why_len, "%.*s: the secret has %zu hex digits, expected %s", (int)fl[0], f[0], fl[2],
			 cr ? "96 (a 48-byte master secret)" : "64 or 96");
		goto malformed;
	}
	if (unhex(f[2], fl[2], secret) < 0) {
		snprintf(why, why_len, "the secret is not hex");
		goto malformed;
	}
	store(ks, random, (enum pxy_key_label)label, secret, fl[2] / 2, now_ns);
	if (ks->remote.published)
		ks->remote.published(ks->remote.ctx, random, (enum pxy_key_label)label, secret, fl[2] / 2,
				     (uint32_t)(ks->ttl_ns / 1000000000ull));
	if (cr)
		ks->st.stored++;
	else
		ks->st.tls13++;
	pxy_wipe(secret, sizeof(secret));
	return 0;
malformed:
	ks->st.malformed++;
	pxy_wipe(secret, sizeof(secret));
	return -1;
}

size_t pxy_keystore_secret(struct pxy_keystore *ks, const uint8_t client_random[32], enum pxy_key_label label,
			   uint8_t out[48])
{
	uint32_t pos;
	const struct entry *e;

	if (!ks || (unsigned)label >= PXY_KL__COUNT || index_find(ks, client_random, &pos) == UINT32_MAX)
		return 0;
	e = &ks->ring[pos];
	if (!(e->have & (1u << label)))
		return 0;
	memcpy(out, e->sec[label], e->len[label]);
	ks->st.matched++;
	return e->len[label];
}

int pxy_keystore_master(struct pxy_keystore *ks, const uint8_t client_random[32], uint8_t ms[48])
{
	return pxy_keystore_secret(ks, client_random, PXY_KL_CLIENT_RANDOM, ms) == 48;
}

static void take_line(struct pxy_keystore *ks, const char *from, const char *l, size_t n, int overlong,
		      uint64_t now)
{
	char why[160];

	if (overlong) {
		ks->st.lines++;
		ks->st.malformed++;
		snprintf(why, sizeof(why), "over %d bytes", LINE_MAX_LEN);
	} else if (pxy_keystore_add_line(ks, l, n, now, why, sizeof(why)) == 0) {
		return;
	}
	if (ks->malformed_logged < LOG_MALFORMED)
		pxy_warn("%s: a malformed line dropped (%s)%s", from, why,
			 ks->malformed_logged + 1 == LOG_MALFORMED ? "; more are only counted" : "");
	ks->malformed_logged++;
}

struct follow_ctx {
	struct pxy_keystore *ks;
	const char *from;
	uint64_t now;
};

static void on_file_line(void *ctx, const char *line, size_t len, int overlong)
{
	struct follow_ctx *c = ctx;

	take_line(c->ks, c->from, line, len, overlong, c->now);
}

int pxy_keystore_push(struct pxy_keystore *ks, const char *line, size_t len)
{
	int r = 0;

	pthread_mutex_lock(&ks->in_mu);
	if (ks->in_len + len + 1 > INBOX_MAX) {
		ks->in_dropped++;
		r = -1;
	} else {
		if (ks->in_len + len + 1 > ks->in_cap) {
			size_t cap = ks->in_cap ? ks->in_cap : 4096;
			char *nb;

			while (cap < ks->in_len + len + 1)
				cap *= 2;
			/* a secret never stays behind in a freed block */
			nb = malloc(cap);
			if (!nb) {
				ks->in_dropped++;
				pthread_mutex_unlock(&ks->in_mu);
				return -1;
			}
			if (ks->inbox) {
				memcpy(nb, ks->inbox, ks->in_len);
				pxy_wipe(ks->inbox, ks->in_cap);
				free(ks->inbox);
			}
			ks->inbox = nb;
			ks->in_cap = cap;
		}
		memcpy(ks->inbox + ks->in_len, line, len);
		ks->inbox[ks->in_len + len] = '\n';
		ks->in_len += len + 1;
	}
	pthread_mutex_unlock(&ks->in_mu);
	return r;
}

void pxy_keystore_refresh(struct pxy_keystore *ks, uint64_t now_ns)
{
	if (!ks)
		return;
	while (ks->count && ks->ring[ks->head].expires <= now_ns) {
		ks->st.expired++;
		pop_oldest(ks);
	}
	if (ks->path) {
		struct follow_ctx c = { ks, ks->path, now_ns };
		char from[600];

		snprintf(from, sizeof(from), "key source %s", ks->path);
		c.from = from;
		pxy_follow_read(&ks->follow, on_file_line, &c);
		ks->st.reopened = ks->follow.reopened;
	}
	if (__atomic_load_n(&ks->in_len, __ATOMIC_RELAXED)) {
		char *in;
		size_t len, cap;

		pthread_mutex_lock(&ks->in_mu);
		in = ks->inbox;
		len = ks->in_len;
		cap = ks->in_cap;
		ks->inbox = NULL;
		ks->in_len = ks->in_cap = 0;
		ks->st.dropped = ks->in_dropped;
		pthread_mutex_unlock(&ks->in_mu);
		for (size_t i = 0, start = 0; i < len; i++)
			if (in[i] == '\n') {
				take_line(ks, "key listener", in + start, i - start, 0, now_ns);
				start = i + 1;
			}
		pxy_wipe(in, cap);
		free(in);
	}
}

void pxy_keystore_stats_get(const struct pxy_keystore *ks, struct pxy_keystore_stats *out)
{
	*out = ks->st;
	out->entries = ks->count;
}

int pxy_key_source_parse(const char *spec, const char **path, char *why, size_t why_len)
{
	if (spec && !strcmp(spec, "shared")) {
		*path = NULL;
		return 0;
	}
	if (!spec || strncmp(spec, "file:", 5) || !spec[5]) {
		snprintf(why, why_len,
			 "'%s': expected file:PATH (a key log a server on this host writes) or shared (the keys other "
			 "nodes put in the shared session store)",
			 spec ? spec : "");
		return -1;
	}
	*path = spec + 5;
	return 0;
}
