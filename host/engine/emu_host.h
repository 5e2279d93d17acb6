/*
 * The host's arithmetic for the kernels' emulation library (kernel_abi.h,
 * struct pxy_k_emu_host), on OpenSSL: what the emu engine lends the
 * emulated device unless PXY_EMU_PURE=1 asks for the kernels' own.
 */
#ifndef PXY_EMU_HOST_H
#define PXY_EMU_HOST_H

#include "proxyssl/kernel_abi.h"

const struct pxy_k_emu_host *pxy_emu_host(void);

/** The calling thread has no work for now: its contexts forget their keys (and the primes' Montgomery forms). */
void pxy_emu_host_idle(void);

#endif
