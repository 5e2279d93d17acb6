/* libFuzzer target: the emulation device's xclbin reader (axlf header, section
 * table, IP_LAYOUT, CONNECTIVITY, EMBEDDED_METADATA XML), short of loading the
 * kernel library. Seeds: xclbins from pxy-xclbin around a stand-in library. */
#include <string.h>

#include "device/dev.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];

	err[0] = '\0';
	if (pxy_emu_xclbin_check(data, size, err, sizeof(err)) < 0 && !err[0])
		__builtin_trap(); /* every refusal says why */
	return 0;
}
