/* Host side of the kernel ABI: building key-table entries. */
#ifndef PXY_KKEY_H
#define PXY_KKEY_H

#include "proxyssl/engine.h"
#include "proxyssl/kernel_abi.h"

/**
 * Fill a key-table entry (with its Montgomery constants) from CRT key
 * material. PXY_E_KEY for sizes the kernel does not implement (2048, 3072,
 * 4096 bits) or primes of unequal length.
 */
int pxy_k_rsa_key_fill(struct pxy_k_rsa_key *k, const struct pxy_rsa_priv *priv);

/** Wipe an entry. */
void pxy_k_rsa_key_wipe(struct pxy_k_rsa_key *k);

#endif
