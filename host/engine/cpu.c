/*
 * The `cpu` engine: OpenSSL on worker threads.
 *
 * Jobs go into one queue under a mutex; each worker takes a batch, runs it
 * with its own OpenSSL contexts and appends the batch to the completion list.
 * A worker that makes the completion list non-empty writes the eventfd once;
 * the io_uring loop, woken by that read, drains everything with poll(). With
 * threads = 0 jobs run inside submit() (deterministic, for tests and fuzzing)
 * and complete through the same list and eventfd.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/cpu_crypto.h"
#include "engine/engines.h"
#include "util/util.h"

#define CPU_MAX_KEYS 64
#define CPU_BATCH 32

struct cpu_engine {
	struct pxy_engine base;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pxy_job *q_head, *q_tail;
	struct pxy_job *c_head, *c_tail;
	unsigned inflight, max_jobs;
	int stopping;
	unsigned nthreads;
	pthread_t *threads;
	struct pxy_cpu_ctx *inline_ctx;
	void *keys[CPU_MAX_KEYS];
	unsigned nkeys;
	int own_fd;
};

static void run_job(struct cpu_engine *e, struct pxy_cpu_ctx *ctx, struct pxy_job *j)
{
	switch (j->type) {
	case PXY_JOB_RSA_DECRYPT:
		j->status = pxy_cpu_rsa_decrypt(j->u.rsa.key_id < e->nkeys ? e->keys[j->u.rsa.key_id] : NULL, &j->u.rsa);
		__atomic_fetch_add(&e->base.stats.rsa_ops, 1, __ATOMIC_RELAXED);
		break;
	case PXY_JOB_RECORD_OPEN:
		j->status = pxy_cpu_record_open(ctx, &j->u.rec);
		__atomic_fetch_add(&e->base.stats.rec_open, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&e->base.stats.bytes_in, j->u.rec.rec_len, __ATOMIC_RELAXED);
		if (!j->u.rec.ok)
			__atomic_fetch_add(&e->base.stats.rec_bad, 1, __ATOMIC_RELAXED);
		break;
	case PXY_JOB_RECORD_SEAL:
		j->status = pxy_cpu_record_seal(ctx, &j->u.rec);
		__atomic_fetch_add(&e->base.stats.rec_seal, 1, __ATOMIC_RELAXED);
		break;
	case PXY_JOB_PRIMITIVE:
		j->status = pxy_cpu_primitive(ctx, &j->u.prim);
		break;
	default:
		j->status = PXY_E_STATE;
		break;
	}
	if (j->status < 0)
		__atomic_fetch_add(&e->base.stats.errors, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&j->completed, 1, __ATOMIC_RELEASE);
}

static void signal_fd(int fd)
{
	uint64_t one = 1;
	ssize_t r;

	do
		r = write(fd, &one, sizeof(one));
	while (r < 0 && errno == EINTR);
}

/* Append a chain of finished jobs; called with e->mu held. Returns 1 if the
 * list was empty (the caller then signals the eventfd, outside the lock). */
static int complete_locked(struct cpu_engine *e, struct pxy_job *head, struct pxy_job *tail)
{
	int was_empty = e->c_head == NULL;

	if (e->c_tail)
		e->c_tail->next = head;
	else
		e->c_head = head;
	e->c_tail = tail;
	return was_empty;
}

static void *worker_main(void *arg)
{
	struct cpu_engine *e = arg;
	struct pxy_cpu_ctx *ctx = pxy_cpu_ctx_new();

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct pxy_job *head, *tail, *j;
		unsigned n = 0;
		int wake;

		while (!e->q_head && !e->stopping)
			pthread_cond_wait(&e->cv, &e->mu);
		if (!e->q_head && e->stopping)
			break;
		head = tail = e->q_head;
		while (tail->next && ++n < CPU_BATCH)
			tail = tail->next;
		e->q_head = tail->next;
		if (!e->q_head)
			e->q_tail = NULL;
		tail->next = NULL;
		pthread_mutex_unlock(&e->mu);

		for (j = head; j; j = j->next) {
			if (ctx)
				run_job(e, ctx, j);
			else
				j->status = PXY_E_NOMEM;
		}

		pthread_mutex_lock(&e->mu);
		wake = complete_locked(e, head, tail);
		if (wake || !e->q_head) {
			int idle = !e->q_head;

			pthread_mutex_unlock(&e->mu);
			if (wake)
				signal_fd(e->base.event_fd);
			if (idle) /* nothing queued: no traffic key stays in this thread's contexts */
				pxy_cpu_ctx_forget(ctx);
			pthread_mutex_lock(&e->mu);
		}
	}
	pthread_mutex_unlock(&e->mu);
	pxy_cpu_ctx_free(ctx);
	return NULL;
}

static void cpu_close(struct pxy_engine *base);

static int cpu_open(const struct pxy_engine_params *p, struct pxy_engine **out)
{
	struct cpu_engine *e = calloc(1, sizeof(*e));

	if (!e)
		return PXY_E_NOMEM;
	e->base.ops = &pxy_cpu_engine_ops;
	e->max_jobs = p && p->max_jobs ? p->max_jobs : 65536;
	e->nthreads = p ? p->threads : 1;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	e->own_fd = !(p && p->shared_event_fd > 0);
	e->base.event_fd = e->own_fd ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : p->shared_event_fd;
	if (e->base.event_fd < 0) {
		free(e);
		return PXY_E_IO;
	}
	if (e->nthreads == 0) {
		e->inline_ctx = pxy_cpu_ctx_new();
		if (!e->inline_ctx)
			goto fail;
	} else {
		e->threads = calloc(e->nthreads, sizeof(*e->threads));
		if (!e->threads)
			goto fail;
		for (unsigned i = 0; i < e->nthreads; i++) {
			if (pthread_create(&e->threads[i], NULL, worker_main, e) != 0) {
				e->nthreads = i;
				goto fail;
			}
		}
	}
	*out = &e->base;
	return PXY_OK;
fail:
	cpu_close(&e->base);
	return PXY_E_ENGINE;
}

static int cpu_key_load(struct pxy_engine *base, const struct pxy_rsa_priv *k, uint32_t *key_id)
{
	struct cpu_engine *e = (struct cpu_engine *)base;
	void *pk;

	unsigned id = 0;

	pthread_mutex_lock(&e->mu);
	while (id < CPU_MAX_KEYS && e->keys[id])
		id++;
	pthread_mutex_unlock(&e->mu);
	if (id == CPU_MAX_KEYS)
		return PXY_E_LIMIT;
	pk = pxy_cpu_rsa_key(k);
	if (!pk)
		return PXY_E_KEY;
	pthread_mutex_lock(&e->mu);
	e->keys[id] = pk;
	if (id >= e->nkeys)
		e->nkeys = id + 1;
	pthread_mutex_unlock(&e->mu);
	*key_id = id;
	return PXY_OK;
}

static void cpu_key_unload(struct pxy_engine *base, uint32_t key_id)
{
	struct cpu_engine *e = (struct cpu_engine *)base;
	void *pk;

	if (key_id >= CPU_MAX_KEYS)
		return;
	pthread_mutex_lock(&e->mu);
	pk = e->keys[key_id];
	e->keys[key_id] = NULL;
	pthread_mutex_unlock(&e->mu);
	pxy_cpu_rsa_key_free(pk);
}

static int cpu_submit(struct pxy_engine *base, struct pxy_job *j)
{
	struct cpu_engine *e = (struct cpu_engine *)base;
	int wake = 0;

	pthread_mutex_lock(&e->mu);
	if (e->inflight >= e->max_jobs) {
		pthread_mutex_unlock(&e->mu);
		__atomic_fetch_add(&e->base.stats.busy_rejects, 1, __ATOMIC_RELAXED);
		return PXY_E_BUSY;
	}
	e->inflight++;
	e->base.stats.inflight = e->inflight;
	if (e->nthreads == 0) {
		pthread_mutex_unlock(&e->mu);
		run_job(e, e->inline_ctx, j);
		pthread_mutex_lock(&e->mu);
		wake = complete_locked(e, j, j);
	} else {
		if (e->q_tail)
			e->q_tail->next = j;
		else
			e->q_head = j;
		e->q_tail = j;
		pthread_cond_signal(&e->cv);
	}
	pthread_mutex_unlock(&e->mu);
	if (wake)
		signal_fd(e->base.event_fd);
	return PXY_OK;
}

static size_t cpu_poll(struct pxy_engine *base, struct pxy_job **out, size_t max)
{
	struct cpu_engine *e = (struct cpu_engine *)base;
	size_t n = 0;

	pthread_mutex_lock(&e->mu);
	while (e->c_head && n < max) {
		struct pxy_job *j = e->c_head;

		e->c_head = j->next;
		j->next = NULL;
		out[n++] = j;
	}
	if (!e->c_head)
		e->c_tail = NULL;
	e->inflight -= (unsigned)n;
	e->base.stats.inflight = e->inflight;
	pthread_mutex_unlock(&e->mu);
	return n;
}

static void cpu_close(struct pxy_engine *base)
{
	struct cpu_engine *e = (struct cpu_engine *)base;

	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	e->stopping = 1;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	for (unsigned i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	free(e->threads);
	pxy_cpu_ctx_free(e->inline_ctx);
	for (unsigned i = 0; i < e->nkeys; i++)
		pxy_cpu_rsa_key_free(e->keys[i]);
	if (e->own_fd && e->base.event_fd >= 0)
		close(e->base.event_fd);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	free(e);
}

const struct pxy_engine_ops pxy_cpu_engine_ops = {
	.name = "cpu",
	.open = cpu_open,
	.key_load = cpu_key_load,
	.key_unload = cpu_key_unload,
	.submit = cpu_submit,
	.flush = NULL,
	.poll = cpu_poll,
	.close = cpu_close,
};
