/*
 * Shared by the engine tests: open the engine named on the command line,
 * run a batch of jobs through it (submit, flush, collect every one), and
 * report what ran where.
 */
#ifndef PXY_ENG_UTIL_H
#define PXY_ENG_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "proxyssl/engine.h"

#define EU_BATCH 64

/* Open `name` (cpu, emu, xrt; emu uses $PXY_EMU_XCLBIN when set). Exits 77 if
 * the engine cannot exist here (xrt without XRT), 1 on any other failure. */
struct pxy_engine *eu_open(const char *prog, const char *name);

/* Submit n jobs, flush, and wait until all n came back (60 s at most). Exits on
 * a submit error or a timeout; returns how many came back with a non-OK status. */
int eu_run(struct pxy_engine *e, struct pxy_job *jobs, int n);

/* RSA private key in CRT form from an EVP_PKEY; the numbers live in *store (free()). */
int eu_rsa_priv(EVP_PKEY *pk, struct pxy_rsa_priv *k, uint8_t **store);

/* One line: device-run and software-run jobs so far. */
void eu_stats(const char *prog, const char *what, const struct pxy_engine *e);

/* Decode hex into a malloc'd buffer (*n bytes); NULL on bad hex. */
uint8_t *eu_unhex(const char *hex, size_t *n);

#endif
