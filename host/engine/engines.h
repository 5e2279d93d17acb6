/* The engines compiled into this build, and the host crypto they share. */
#ifndef PXY_ENGINES_H
#define PXY_ENGINES_H

#include "proxyssl/engine.h"

extern const struct pxy_engine_ops pxy_cpu_engine_ops;
extern const struct pxy_engine_ops pxy_emu_engine_ops;
extern const struct pxy_engine_ops pxy_xrt_engine_ops;
extern const struct pxy_engine_ops pxy_auto_engine_ops;

#endif
