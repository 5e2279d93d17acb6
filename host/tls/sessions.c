#include "tls/sessions.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define NIL UINT32_MAX

struct entry {
	uint8_t key[PXY_SESSION_KEY_LEN];
	struct pxy_session s;
	uint64_t expires_ns;
	uint32_t chain;      /* next in the bucket */
	uint32_t prev, next; /* LRU list (most recent at head); free list through next */
};

struct pxy_sessions {
	struct entry *e;
	uint32_t *bucket;
	uint32_t nbuckets; /* power of two */
	uint32_t max;
	uint32_t head, tail, free;
	uint64_t lifetime_ns;
	struct pxy_sessions_stats st;
	struct pxy_sessions_remote remote;
	pthread_mutex_t mu; /* the workers of one virtual server share the cache */
};

struct pxy_sessions *pxy_sessions_new(size_t max, uint32_t lifetime_s)
{
	struct pxy_sessions *c;

	if (max == 0 || max > (1u << 24))
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->mu, NULL);
	c->max = (uint32_t)max;
	for (c->nbuckets = 16; c->nbuckets < c->max; c->nbuckets <<= 1)
		;
	c->e = calloc(max, sizeof(*c->e));
	c->bucket = malloc(c->nbuckets * sizeof(*c->bucket));
	if (!c->e || !c->bucket) {
		pxy_sessions_free(c);
		return NULL;
	}
	for (uint32_t i = 0; i < c->nbuckets; i++)
		c->bucket[i] = NIL;
	for (uint32_t i = 0; i < c->max; i++)
		c->e[i].next = i + 1 < c->max ? i + 1 : NIL;
	c->free = 0;
	c->head = c->tail = NIL;
	c->lifetime_ns = (uint64_t)lifetime_s * 1000000000u;
	return c;
}

void pxy_sessions_free(struct pxy_sessions *c)
{
	if (!c)
		return;
	if (c->e)
		OPENSSL_cleanse(c->e, (size_t)c->max * sizeof(*c->e));
	free(c->e);
	free(c->bucket);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

void pxy_session_key(enum pxy_session_kind kind, const uint8_t *id, size_t len, uint8_t key[PXY_SESSION_KEY_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t k = (uint8_t)kind;
	unsigned n = 0;

	/* a failure leaves a key that matches nothing stored (all zero is never a digest we put) */
	memset(key, 0, PXY_SESSION_KEY_LEN);
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) || !EVP_DigestUpdate(md, &k, 1) ||
	    (len && !EVP_DigestUpdate(md, id, len)) || !EVP_DigestFinal_ex(md, key, &n))
		memset(key, 0, PXY_SESSION_KEY_LEN);
	EVP_MD_CTX_free(md);
}

static uint32_t bucket_of(const struct pxy_sessions *c, const uint8_t *key)
{
	uint32_t h;

	memcpy(&h, key, sizeof(h));
	return h & (c->nbuckets - 1);
}

static void lru_unlink(struct pxy_sessions *c, uint32_t i)
{
	struct entry *x = &c->e[i];

	if (x->prev != NIL)
		c->e[x->prev].next = x->next;
	else
		c->head = x->next;
	if (x->next != NIL)
		c->e[x->next].prev = x->prev;
	else
		c->tail = x->prev;
}

static void lru_push(struct pxy_sessions *c, uint32_t i)
{
	struct entry *x = &c->e[i];

	x->prev = NIL;
	x->next = c->head;
	if (c->head != NIL)
		c->e[c->head].prev = i;
	c->head = i;
	if (c->tail == NIL)
		c->tail = i;
}

static uint32_t find(const struct pxy_sessions *c, const uint8_t *key, uint32_t **link)
{
	uint32_t *l = &c->bucket[bucket_of(c, key)];

	while (*l != NIL && memcmp(c->e[*l].key, key, PXY_SESSION_KEY_LEN) != 0)
		l = &c->e[*l].chain;
	if (link)
		*link = l;
	return *l;
}

static void drop(struct pxy_sessions *c, uint32_t i)
{
	uint32_t *l;

	if (find(c, c->e[i].key, &l) == i)
		*l = c->e[i].chain;
	lru_unlink(c, i);
	OPENSSL_cleanse(&c->e[i], sizeof(c->e[i]));
	c->e[i].next = c->free;
	c->free = i;
	c->st.entries--;
}

static void put(struct pxy_sessions *c, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s,
		uint32_t hint_s, uint64_t now_ns, int tell)
{
	uint64_t life = c->lifetime_ns;
	uint32_t i, *link;

	if (hint_s && (uint64_t)hint_s * 1000000000u < life)
		life = (uint64_t)hint_s * 1000000000u;
	if (tell && c->remote.stored)
		c->remote.stored(c->remote.ctx, key, s, (uint32_t)(life / 1000000000u));
	i = find(c, key, &link);
	if (i != NIL) {
		lru_unlink(c, i);
	} else {
		if (c->free == NIL) {
			drop(c, c->tail); /* the least recently used */
			c->st.evicted++;
		}
		i = c->free;
		c->free = c->e[i].next;
		memcpy(c->e[i].key, key, PXY_SESSION_KEY_LEN);
		/* find() may have been invalidated by the eviction: link anew */
		link = &c->bucket[bucket_of(c, key)];
		c->e[i].chain = *link;
		*link = i;
		c->st.entries++;
	}
	c->e[i].s = *s;
	c->e[i].expires_ns = now_ns + life;
	lru_push(c, i);
	c->st.stored++;
}

void pxy_sessions_put(struct pxy_sessions *c, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s,
		      uint32_t hint_s, uint64_t now_ns)
{
	pthread_mutex_lock(&c->mu);
	put(c, key, s, hint_s, now_ns, 1);
	pthread_mutex_unlock(&c->mu);
}

void pxy_sessions_put_shared(struct pxy_sessions *c, const uint8_t key[PXY_SESSION_KEY_LEN],
			     const struct pxy_session *s, uint32_t ttl_s, uint64_t now_ns)
{
	pthread_mutex_lock(&c->mu);
	put(c, key, s, ttl_s ? ttl_s : 1, now_ns, 0);
	pthread_mutex_unlock(&c->mu);
}

void pxy_sessions_set_remote(struct pxy_sessions *c, const struct pxy_sessions_remote *r)
{
	c->remote = *r;
}

static int get(struct pxy_sessions *c, const uint8_t key[PXY_SESSION_KEY_LEN], struct pxy_session *out,
	       uint64_t now_ns)
{
	uint32_t i = find(c, key, NULL);

	if (i == NIL) {
		c->st.misses++;
		if (c->remote.missed)
			c->remote.missed(c->remote.ctx, key);
		return 0;
	}
	if (now_ns >= c->e[i].expires_ns) {
		drop(c, i);
		c->st.expired++;
		c->st.misses++;
		if (c->remote.missed)
			c->remote.missed(c->remote.ctx, key);
		return 0;
	}
	*out = c->e[i].s;
	lru_unlink(c, i);
	lru_push(c, i);
	c->st.hits++;
	return 1;
}

int pxy_sessions_get(struct pxy_sessions *c, const uint8_t key[PXY_SESSION_KEY_LEN], struct pxy_session *out,
		     uint64_t now_ns)
{
	int r;

	pthread_mutex_lock(&c->mu);
	r = get(c, key, out, now_ns);
	pthread_mutex_unlock(&c->mu);
	return r;
}

const struct pxy_sessions_stats *pxy_sessions_stats(const struct pxy_sessions *c)
{
	return &c->st;
}

void pxy_sessions_expire(struct pxy_sessions *c, uint64_t now_ns, unsigned max)
{
	pthread_mutex_lock(&c->mu);
	/* from the least recently used end: a session not used for longest is the likeliest expired */
	for (uint32_t i = c->tail, n = 0; i != NIL && n < max; n++) {
		uint32_t prev = c->e[i].prev;

		if (now_ns >= c->e[i].expires_ns) {
			drop(c, i);
			c->st.expired++;
		}
		i = prev;
	}
	pthread_mutex_unlock(&c->mu);
}

void pxy_sessions_stats_get(struct pxy_sessions *c, struct pxy_sessions_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->st;
	pthread_mutex_unlock(&c->mu);
}
