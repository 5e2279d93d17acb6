/*
 * Shared by the engine conformance tests (kat_test.c, xcheck_test.c): open
 * the engine named on the command line, run a batch of jobs through it the
 * way the io_uring loop does (submit, flush, wait on the eventfd, poll), a
 * seeded random source, RSA keys in the engine's form, and the engine's
 * counters per part of a test.
 */
#ifndef PXY_ENGINE_UTIL_H
#define PXY_ENGINE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "proxyssl/engine.h"

/* jobs per batch: the RSA kernel's batch, half the record kernel's */
#define ET_BATCH 64

/** The engine under test (argv[1]); set by et_main_engine. */
extern const char *et_engine_name;

/**
 * Take the engine name from argv[1] and check that the engine opens. Returns
 * 0 to go on, or the exit code: 77 when the engine cannot run here (xrt
 * without a card), 1 on a usage error or an engine that should open but
 * does not.
 */
int et_main_engine(int argc, char **argv, const char *prog);

/** 1 for engines that run the kernels (emu, xrt). */
int et_is_device(void);

/** A fresh engine (its own key table and counters); fails the test if it does not open. */
struct pxy_engine *et_open(void);

/**
 * Submit n jobs (n <= ET_BATCH), flush, and collect them all. Fails the test
 * if a job is refused, comes back twice, comes back not completed or with a
 * status other than PXY_OK, or does not come back within a minute.
 */
void et_run(struct pxy_engine *e, struct pxy_job *jobs, size_t n);

/** What the engine did for one part of a test (counter differences). */
struct et_delta {
	uint64_t launches, device, software, failures, faults, errors;
};

void et_delta(const struct pxy_engine_stats *before, const struct pxy_engine *e, struct et_delta *d);
/** "jobs J: device D in L launches, software S, device failures F, faults X, errors E" */
void et_print_delta(const char *what, size_t jobs, const struct et_delta *d);
/**
 * For the device engines: the kernels ran (device > 0), nothing failed over
 * or was withheld (failures, faults, errors all 0), and exactly
 * `want_software` jobs went to software (shapes the kernels do not take).
 */
void et_check_device(const char *what, const struct et_delta *d, uint64_t want_software);

/** The seed from PXY_TEST_SEED, or from the clock; printed once. */
uint64_t et_seed(void);
/** xorshift64*: reproducible from the seed. */
uint64_t et_rand(void);
/** Uniform in [0, n). */
uint32_t et_below(uint32_t n);
void et_rand_bytes(uint8_t *p, size_t n);

/** Hex to bytes (malloc'd, at least one byte); *len gets the length. */
uint8_t *et_unhex(const char *hex, size_t *len);


#endif
