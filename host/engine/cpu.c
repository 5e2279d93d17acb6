/*
 * The `cpu` engine: OpenSSL, on worker threads or on the caller's thread.
 *
 * With threads: jobs go into one queue under a mutex; an idle worker is woken
 * (only when one is waiting: a busy worker finds the queue on its own), takes
 * a batch, runs it with its own OpenSSL contexts and appends the batch to the
 * completion list. A worker that makes the completion list non-empty writes
 * the eventfd once; the io_uring loop, woken by that read, drains everything
 * with poll().
 *
 * With threads = 0 (PXY_ENGINE_F_SYNC) jobs queue up in submit() and run in
 * flush(), on the caller's thread, then wait on the completion list for the
 * caller's poll(): no thread hand-off, no eventfd. That is the fastest form
 * when the machine has no core to spare for crypto (every hand-off costs two
 * context switches). The io loop flushes at the end of its turn, after its
 * sends have gone to the kernel, so a job never delays forwarding: a
 * ClientKeyExchange reaches the server while its pre-master secret is being
 * decrypted here (about 0.25 ms for RSA-2048), and a record is forwarded
 * before it is decrypted.
 *
 * Keys: each thread's contexts keep the key schedules of the last few keys
 * (see cpu_crypto.c). A worker forgets them after FORGET_MS without work; the
 * synchronous form at the first flush() (the loop's turn) FORGET_MS after its
 * last job; an idle loop turns at least every tick.
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
#define FORGET_MS 10 /* an idle worker keeps no traffic key longer than this */

struct cpu_engine {
	struct pxy_engine base;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pxy_job *q_head, *q_tail;
	struct pxy_job *c_head, *c_tail;
	unsigned inflight, max_jobs;
	unsigned idle; /* workers waiting for jobs */
	int stopping;
	uint64_t last_job_ns; /* synchronous: when the last job ran (0: keys forgotten) */
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
	int keyed = 0; /* ctx may hold keys */

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct pxy_job *head, *tail, *j;
		unsigned n = 0;
		int wake;

		while (!e->q_head && !e->stopping) {
			e->idle++;
			if (keyed) {
				/* wait a little with the keys, then forget them and wait for good */
				struct timespec ts;

				pxy_deadline_ms(&ts, FORGET_MS);
				if (pthread_cond_timedwait(&e->cv, &e->mu, &ts) == ETIMEDOUT && !e->q_head) {
					pthread_mutex_unlock(&e->mu);
					pxy_cpu_ctx_forget(ctx);
					keyed = 0;
					pthread_mutex_lock(&e->mu);
				}
			} else {
				pthread_cond_wait(&e->cv, &e->mu);
			}
			e->idle--;
		}
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
		keyed = 1;

		pthread_mutex_lock(&e->mu);
		wake = complete_locked(e, head, tail);
		if (wake) {
			pthread_mutex_unlock(&e->mu);
			signal_fd(e->base.event_fd);
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
		e->base.flags |= PXY_ENGINE_F_SYNC;
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

	pthread_mutex_lock(&e->mu);
	if (e->inflight >= e->max_jobs) {
		pthread_mutex_unlock(&e->mu);
		__atomic_fetch_add(&e->base.stats.busy_rejects, 1, __ATOMIC_RELAXED);
		return PXY_E_BUSY;
	}
	e->inflight++;
	e->base.stats.inflight = e->inflight;
	if (e->q_tail)
		e->q_tail->next = j;
	else
		e->q_head = j;
	e->q_tail = j;
	/* a busy worker takes the queue when it is done: wake only a waiting one (synchronous: flush runs it) */
	if (e->idle)
		pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return PXY_OK;
}

/*
 * Synchronous: run what was queued, here, and leave it for poll() (nothing is
 * signalled); after FORGET_MS without a job the keys go.
 */
static void cpu_flush(struct pxy_engine *base)
{
	struct cpu_engine *e = (struct cpu_engine *)base;
	struct pxy_job *head, *tail = NULL;

	if (e->nthreads)
		return;
	pthread_mutex_lock(&e->mu);
	head = e->q_head;
	e->q_head = e->q_tail = NULL;
	pthread_mutex_unlock(&e->mu);
	if (head) {
		for (struct pxy_job *j = head; j; j = j->next) {
			run_job(e, e->inline_ctx, j);
			tail = j;
		}
		pthread_mutex_lock(&e->mu);
		complete_locked(e, head, tail);
		pthread_mutex_unlock(&e->mu);
		e->last_job_ns = pxy_now_ns();
		return;
	}
	if (e->last_job_ns && pxy_now_ns() - e->last_job_ns >= FORGET_MS * 1000000ull) {
		pxy_cpu_ctx_forget(e->inline_ctx);
		e->last_job_ns = 0;
	}
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
	.flush = cpu_flush,
	.poll = cpu_poll,
	.close = cpu_close,
};
