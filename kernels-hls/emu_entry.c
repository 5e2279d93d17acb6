/*
 * Host-only: the entry points through which the emulation device calls the
 * kernels. Not part of synthesis. The emulated device binds a kernel by the
 * name in the xclbin's metadata: pxyk_call_<name>(args, nargs), with every
 * argument (buffer address or scalar) widened to 64 bits in argument order,
 * as an XRT run passes them to the compute unit's registers.
 */
#include "kernel.h"

#ifdef PXYK_HAVE_HOST
const struct pxy_k_emu_host *pxyk_host;

int pxyk_emu_bind(const struct pxy_k_emu_host *host);

/* The emulation device lends its arithmetic (kernel_abi.h); NULL takes it back. */
int pxyk_emu_bind(const struct pxy_k_emu_host *host)
{
	if (host && host->version != PXY_K_ABI_VERSION)
		return -1;
	pxyk_host = host;
	return 0;
}
#endif

unsigned pxyk_abi_version(void);
int pxyk_call_rsa_crt_decrypt(const uint64_t *args, unsigned nargs);
int pxyk_call_tls_record_crypt(const uint64_t *args, unsigned nargs);

unsigned pxyk_abi_version(void)
{
	return PXY_K_ABI_VERSION;
}

int pxyk_call_rsa_crt_decrypt(const uint64_t *args, unsigned nargs)
{
	if (nargs != PXY_K_RSA_NARGS)
		return -1;
	rsa_crt_decrypt((const struct pxy_k_rsa_key *)(uintptr_t)args[PXY_K_RSA_ARG_KEYS],
			(const struct pxy_k_rsa_job *)(uintptr_t)args[PXY_K_RSA_ARG_JOBS],
			(struct pxy_k_rsa_result *)(uintptr_t)args[PXY_K_RSA_ARG_RESULTS], (uint32_t)args[PXY_K_RSA_ARG_N]);
	return 0;
}

int pxyk_call_tls_record_crypt(const uint64_t *args, unsigned nargs)
{
	if (nargs != PXY_K_REC_NARGS)
		return -1;
	tls_record_crypt((const struct pxy_k_rec_desc *)(uintptr_t)args[PXY_K_REC_ARG_DESCS],
			 (const uint8_t *)(uintptr_t)args[PXY_K_REC_ARG_IN], (uint8_t *)(uintptr_t)args[PXY_K_REC_ARG_OUT],
			 (struct pxy_k_rec_result *)(uintptr_t)args[PXY_K_REC_ARG_RESULTS],
			 (uint32_t)args[PXY_K_REC_ARG_N]);
	return 0;
}
