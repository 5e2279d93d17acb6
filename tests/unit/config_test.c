/* Command line and config file: defaults, overrides, and one clear error per mistake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "proxyssl/error.h"

static int parse(struct pxy_config *c, char *err, size_t n, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = "proxyssl";
	va_start(ap, n);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	return pxy_config_parse(c, argc, argv, err, n);
}

#define REQ "--listen", "127.0.0.1:1", "--backend", "127.0.0.1:2", "--cert", "c.pem", "--key", "k.pem"

static void test_defaults_and_values(void **state)
{
	struct pxy_config c;
	char err[512];

	(void)state;
	assert_int_equal(parse(&c, err, sizeof(err), REQ, NULL), PXY_OK);
	assert_string_equal(c.listen, "127.0.0.1:1");
	assert_true(c.engine_threads == PXY_CONFIG_AUTO); /* decided at start */
	assert_int_equal(c.buffer_size, 65536);
	assert_int_equal(c.max_queue, 256 * 1024);
	assert_int_equal(c.buffers, 256);
	assert_int_equal(c.max_pending, 16 * 1024 * 1024);
	assert_int_equal(c.max_pending_total, 256 * 1024 * 1024);
	assert_null(c.engine);
	pxy_config_free(&c);

	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--max-queue", "1M", "--buffers=2048", "--engine", "cpu",
			       "--plaintext-dir", "/tmp", NULL),
			 PXY_OK);
	assert_int_equal(c.max_queue, 1024 * 1024);
	assert_int_equal(c.buffers, 2048);
	assert_string_equal(c.engine, "cpu");
	pxy_config_free(&c);

	assert_int_equal(c.workers, 0);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, NULL), PXY_OK);
	assert_int_equal(c.workers, 1);
	pxy_config_free(&c);
	/* auto: one per online core, within 1..64 */
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--workers", "auto", NULL), PXY_OK);
	assert_true(c.workers >= 1 && c.workers <= 64);
	assert_int_equal((long)c.workers, sysconf(_SC_NPROCESSORS_ONLN) > 64 ? 64 : sysconf(_SC_NPROCESSORS_ONLN));
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--workers", "0", NULL), PXY_E_USAGE);
	pxy_config_free(&c);
}

static void test_errors(void **state)
{
	struct pxy_config c;
	char err[512];

	(void)state;
	assert_int_equal(parse(&c, err, sizeof(err), "--listen", "127.0.0.1:1", NULL), PXY_E_USAGE);
	assert_non_null(strstr(err, "required"));
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--bogus", NULL), PXY_E_USAGE);
	assert_non_null(strstr(err, "--bogus"));
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--buffers", "1000", NULL), PXY_E_USAGE);
	assert_non_null(strstr(err, "power of two"));
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--max-queue", "12Q", NULL), PXY_E_USAGE);
	assert_non_null(strstr(err, "--max-queue"));
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--engine-threads", "-1", NULL), PXY_E_USAGE);
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--engine-threads", "257", NULL), PXY_E_USAGE);
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--engine-threads", "0", NULL), PXY_OK);
	assert_int_equal(c.engine_threads, 0);
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--engine-threads", "auto", NULL), PXY_OK);
	assert_true(c.engine_threads == PXY_CONFIG_AUTO);
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--log-level", "loud", NULL), PXY_E_USAGE);
	pxy_config_free(&c);
	/* --emu-timing: a card this build has a table for, a scale of at least 1 */
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--emu-timing", "u250:20", NULL), PXY_OK);
	assert_string_equal(c.emu_timing, "u250:20");
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--emu-timing", "u999", NULL), PXY_E_USAGE);
	assert_non_null(strstr(err, "no timing table u999.timing"));
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--emu-timing", "u55c:0.5", NULL), PXY_E_USAGE);
	assert_non_null(strstr(err, "must be a number >= 1"));
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "--emu-timing", "/etc/passwd", NULL), PXY_E_USAGE);
	assert_non_null(strstr(err, "expected key = value"));
	pxy_config_free(&c);
	/* ports are 16 bits: no quiet truncation; the backend's port is not 0 */
	assert_int_equal(parse(&c, err, sizeof(err), "--listen", "127.0.0.1:99999", "--backend", "127.0.0.1:2", "--cert",
			       "c", "--key", "k", NULL),
			 PXY_E_USAGE);
	assert_non_null(strstr(err, "99999"));
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:0", "--cert", "c",
			       "--key", "k", NULL),
			 PXY_E_USAGE);
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), "--listen", "::1:80", "--backend", "[::1]:2", "--cert", "c", "--key",
			       "k", NULL),
			 PXY_E_USAGE);
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), "--listen", "[::1]:80", "--backend", "[::1]:2", "--cert", "c",
			       "--key", "k", NULL),
			 PXY_OK);
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), REQ, "extra", NULL), PXY_E_USAGE);
	pxy_config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), "--help", NULL), PXY_OK);
	assert_true(c.help);
	pxy_config_free(&c);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void test_config_file(void **state)
{
	struct pxy_config c;
	char err[512], path[] = "/tmp/pxycfg.XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "; comment\n[proxy]\nlisten = 127.0.0.1:9\nbackend = 127.0.0.1:10\ncert = a\nkey = b\n"
			 "max-queue = 512K\n");
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, "--listen", "127.0.0.1:11", NULL), PXY_OK);
	assert_string_equal(c.listen, "127.0.0.1:11"); /* the command line wins */
	assert_string_equal(c.backend, "127.0.0.1:10");
	assert_int_equal(c.max_queue, 512 * 1024);
	pxy_config_free(&c);

	write_file(path, "[proxy]\nlisten = 127.0.0.1:9\n\nlisten-backlog = 5\n");
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, NULL), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":4:"));
	assert_non_null(strstr(err, "listen-backlog"));
	pxy_config_free(&c);

	/* value checks name the line too */
	write_file(path, "[proxy]\nlisten = 127.0.0.1:9\n\n\n\nbuffers = 1000\n");
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, NULL), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":6: --buffers: 1000 is not a power of two"));
	pxy_config_free(&c);
	write_file(path, "[proxy]\nlog-level = chatty\n");
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, NULL), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":2: --log-level"));
	pxy_config_free(&c);
	write_file(path, "[proxy]\nengine = warp\n");
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, NULL), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":2: --engine: unknown engine 'warp'"));
	pxy_config_free(&c);
	write_file(path, "[proxy]\nlisten = 127.0.0.1\n");
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, NULL), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":2: --listen"));
	pxy_config_free(&c);

	write_file(path, "[proxy]\nbuffers = many\n");
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, NULL), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":2:"));
	pxy_config_free(&c);

	write_file(path, "[other]\nlisten = x\n");
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, NULL), PXY_E_CONFIG);
	assert_non_null(strstr(err, "[other]"));
	pxy_config_free(&c);

	write_file(path, "[proxy]\nthis line has no equals sign\n");
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, NULL), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":2:"));
	pxy_config_free(&c);

	unlink(path);
	assert_int_equal(parse(&c, err, sizeof(err), "--config", path, NULL), PXY_E_FILE);
	pxy_config_free(&c);
}

/* [proxy] is shared, each [vserver NAME] adds its own over it, the command line wins over both */
static void test_vservers(void **state)
{
	struct pxy_config c;
	char err[512], path[] = "/tmp/pxycfg.XXXXXX";
	char *argv[] = { "proxyssl", "--config", path, "--max-queue", "1M", NULL };
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "[proxy]\ncert = shared.pem\nkey = shared.key\nbuffers = 512\nmax-queue = 512K\n"
			 "[vserver web]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\nbuffers = 1024\n"
			 "[vserver api]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\ncert = api.pem\nkey = api.key\n"
			 "[proxy]\nlog-level = warn\n");
	/* the file as a whole: the sections, and no required settings in [proxy] */
	assert_int_equal(pxy_config_parse(&c, 5, argv, err, sizeof(err)), PXY_OK);
	assert_int_equal(c.n_vservers, 2);
	assert_string_equal(c.vservers[0], "web");
	assert_string_equal(c.vservers[1], "api");
	assert_null(c.vserver);
	pxy_config_free(&c);

	assert_int_equal(pxy_config_parse_vserver(&c, 5, argv, "web", err, sizeof(err)), PXY_OK);
	assert_string_equal(c.vserver, "web");
	assert_string_equal(c.listen, "127.0.0.1:1");
	assert_string_equal(c.cert, "shared.pem");    /* from [proxy] */
	assert_int_equal(c.buffers, 1024);            /* the section over [proxy] */
	assert_int_equal(c.max_queue, 1024 * 1024);   /* the command line over both */
	assert_string_equal(c.log_level, "warn");     /* [proxy] after the sections still counts */
	assert_int_equal(c.lines[0], 7);              /* listen: where it was set */
	pxy_config_free(&c);
	assert_int_equal(pxy_config_parse_vserver(&c, 5, argv, "api", err, sizeof(err)), PXY_OK);
	assert_string_equal(c.cert, "api.pem");
	assert_int_equal(c.buffers, 512);
	pxy_config_free(&c);
	assert_int_equal(pxy_config_parse_vserver(&c, 5, argv, "mail", err, sizeof(err)), PXY_E_USAGE);
	assert_non_null(strstr(err, "no [vserver mail] section"));
	pxy_config_free(&c);

	/* a vserver missing a required setting is told when it is parsed */
	write_file(path, "[vserver web]\nlisten = 127.0.0.1:1\n");
	assert_int_equal(pxy_config_parse(&c, 3, argv, err, sizeof(err)), PXY_OK);
	pxy_config_free(&c);
	assert_int_equal(pxy_config_parse_vserver(&c, 3, argv, "web", err, sizeof(err)), PXY_E_USAGE);
	assert_non_null(strstr(err, "required"));
	pxy_config_free(&c);

	write_file(path, "[vserver web]\nlog = x.log\n");
	assert_int_equal(pxy_config_parse(&c, 3, argv, err, sizeof(err)), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":2: 'log' is set for the whole process"));
	pxy_config_free(&c);
	write_file(path, "[vserver]\nlisten = 127.0.0.1:1\n");
	assert_int_equal(pxy_config_parse(&c, 3, argv, err, sizeof(err)), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":2: [vserver]: a virtual server needs a name"));
	pxy_config_free(&c);
	write_file(path, "[vserver web]\nlisten = 127.0.0.1:1\n[vserver api]\nlisten-queue = 1\n");
	assert_int_equal(pxy_config_parse(&c, 3, argv, err, sizeof(err)), PXY_E_CONFIG);
	assert_non_null(strstr(err, ":4: unknown setting 'listen-queue'"));
	pxy_config_free(&c);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_values),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_config_file),
		cmocka_unit_test(test_vservers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
