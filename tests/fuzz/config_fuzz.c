/* libFuzzer target: the config file parser (libinih and every setting's check)
 * on arbitrary files: it must accept or refuse, and a refusal must name the
 * problem (and the file and line for a value it refuses); every [vserver]
 * section the file has is parsed too. Seeds: the example config and
 * variations. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	char path[64], err[1024];
	char *argv[] = { "proxyssl", "--config", path, NULL };
	struct pxy_config c;
	int r;

	if (fd < 0)
		fd = memfd_create("config", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	err[0] = '\0';
	r = pxy_config_parse(&c, 3, argv, err, sizeof(err));
	if (r < 0 && !err[0])
		__builtin_trap(); /* every refusal says why */
	/* each [vserver NAME] over [proxy], as a start parses them */
	for (int v = 0; r == 0 && v < c.n_vservers; v++) {
		struct pxy_config vc;
		int rv;

		err[0] = '\0';
		rv = pxy_config_parse_vserver(&vc, 3, argv, c.vservers[v], err, sizeof(err));
		if ((rv < 0 && !err[0]) || (rv == 0 && (!vc.vserver || strcmp(vc.vserver, c.vservers[v]))))
			__builtin_trap();
		pxy_config_free(&vc);
	}
	pxy_config_free(&c);
	return 0;
}
