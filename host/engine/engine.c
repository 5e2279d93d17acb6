#include "proxyssl/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "device/dev.h"
#include "engine/engines.h"
#include "util/util.h"

/* in the order pxy_engine_names lists them: auto, the default, first */
static const struct pxy_engine_ops *const engines[] = {
	&pxy_auto_engine_ops,
	&pxy_cpu_engine_ops,
	&pxy_emu_engine_ops,
	&pxy_xrt_engine_ops,
};

/*
 * `auto`: the card when there is one to use, else the emulated kernels.
 * A card is used when XRT is set up (XILINX_XRT), XRT is not in one of its
 * own emulation modes, a hardware xclbin is given, and the xrt engine opens
 * the device and loads that xclbin. Each refusal names its reason in `why`.
 */
static int auto_open(const struct pxy_engine_params *p, struct pxy_engine **out)
{
	struct pxy_engine_params q = p ? *p : (struct pxy_engine_params){ 0 };
	struct pxy_xclbin_info info;
	char reason[256], card[200];
	const char *xrt = getenv("XILINX_XRT"), *emu_mode = getenv("XCL_EMULATION_MODE");
	int have_info = q.xclbin && pxy_xclbin_info(q.xclbin, &info, reason, sizeof(reason)) == 0;
	int r;

	if (q.xclbin && !have_info) {
		/* reason holds why the file is unusable */
	} else if (q.emu_timing && *q.emu_timing) {
		snprintf(reason, sizeof(reason), "--emu-timing asks for the emulation");
	} else if (!xrt || !*xrt) {
		snprintf(reason, sizeof(reason), "no card: XILINX_XRT is not set");
	} else if (emu_mode && *emu_mode) {
		snprintf(reason, sizeof(reason), "XCL_EMULATION_MODE=%s is XRT emulation, not a card", emu_mode);
	} else if (!q.xclbin) {
		snprintf(reason, sizeof(reason), "no hardware xclbin given (--xclbin)");
	} else if (info.host_kernels) {
		snprintf(reason, sizeof(reason), "%s is an emulation xclbin", q.xclbin);
	} else {
		q.why = card;
		q.why_len = sizeof(card);
		card[0] = '\0';
		r = pxy_xrt_engine_ops.open(&q, out);
		if (r == PXY_OK) {
			if (p && p->why)
				snprintf(p->why, p->why_len, "xrt: card %u with %s (platform %s)", q.device, q.xclbin,
					 info.vbnv);
			return r;
		}
		snprintf(reason, sizeof(reason), "the card is not usable: %s", card);
	}
	if (have_info && !info.host_kernels)
		q.xclbin = NULL; /* a hardware xclbin: emulate with this build's own */
	q.why = card;
	q.why_len = sizeof(card);
	card[0] = '\0';
	r = pxy_emu_engine_ops.open(&q, out);
	if (p && p->why)
		snprintf(p->why, p->why_len, r == PXY_OK ? "emu: %s" : "emu: %s; and the emulation failed: %s", reason,
			 card);
	return r;
}

const struct pxy_engine_ops pxy_auto_engine_ops = {
	.name = "auto",
	.open = auto_open,
};

const struct pxy_engine_ops *pxy_engine_find(const char *name)
{
	for (size_t i = 0; i < PXY_ARRAY_LEN(engines); i++)
		if (name && !strcmp(engines[i]->name, name))
			return engines[i];
	return NULL;
}

/* The table's names, built at the first call: config checks call it from any loop's thread (at a reload). */
static char engine_names[PXY_ARRAY_LEN(engines) * 16];
static pthread_once_t engine_names_once = PTHREAD_ONCE_INIT;

static void engine_names_build(void)
{
	for (size_t i = 0, n = 0; i < PXY_ARRAY_LEN(engines) && n < sizeof(engine_names); i++)
		n += (size_t)snprintf(engine_names + n, sizeof(engine_names) - n, "%s%s", i ? " " : "",
				      engines[i]->name);
}

const char *pxy_engine_names(void)
{
	pthread_once(&engine_names_once, engine_names_build);
	return engine_names;
}

int pxy_engine_open(const char *name, const struct pxy_engine_params *p, struct pxy_engine **out)
{
	const struct pxy_engine_ops *ops = pxy_engine_find(name);

	*out = NULL;
	if (!ops)
		return PXY_E_NO_ENGINE;
	return ops->open(p, out);
}

int pxy_engine_submit(struct pxy_engine *e, struct pxy_job *job)
{
	job->status = PXY_OK;
	job->completed = 0;
	job->next = NULL;
	job->submit_ns = pxy_now_ns();
	return e->ops->submit(e, job);
}

void pxy_engine_flush(struct pxy_engine *e)
{
	if (e->ops->flush)
		e->ops->flush(e);
}

size_t pxy_engine_poll(struct pxy_engine *e, struct pxy_job **out, size_t max)
{
	return e->ops->poll(e, out, max);
}

size_t pxy_engine_complete(struct pxy_engine *e)
{
	struct pxy_job *jobs[64];
	size_t n, total = 0;

	while ((n = e->ops->poll(e, jobs, PXY_ARRAY_LEN(jobs))) > 0) {
		for (size_t i = 0; i < n; i++)
			jobs[i]->done(jobs[i]);
		total += n;
	}
	return total;
}

void pxy_engine_ack(struct pxy_engine *e)
{
	uint64_t v;
	ssize_t r;

	do
		r = read(e->event_fd, &v, sizeof(v));
	while (r < 0 && errno == EINTR);
}

void pxy_engine_close(struct pxy_engine *e)
{
	if (e)
		e->ops->close(e);
}
