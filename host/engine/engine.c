#include "proxyssl/engine.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "engine/engines.h"
#include "util/util.h"

static const struct pxy_engine_ops *const engines[] = {
	&pxy_cpu_engine_ops,
};

const struct pxy_engine_ops *pxy_engine_find(const char *name)
{
	for (size_t i = 0; i < PXY_ARRAY_LEN(engines); i++)
		if (name && !strcmp(engines[i]->name, name))
			return engines[i];
	return NULL;
}

const char *pxy_engine_names(void)
{
	return "cpu";
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
