/* "ADDR:PORT" and "[IPv6]:PORT" as the command line and config file take them. */
#ifndef PXY_ADDR_H
#define PXY_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/**
 * Split and check the syntax (port min_port..65535); no name lookup.
 * On error writes why into err and returns -1.
 */
int pxy_addr_split(const char *s, unsigned min_port, char *host, size_t host_len, uint16_t *port, char *err,
		   size_t err_len);

/** Split, then resolve (numeric or by name). */
int pxy_addr_resolve(const char *s, unsigned min_port, struct sockaddr_storage *ss, socklen_t *len, char *err,
		     size_t err_len);

/** Same family, address and port (IPv4 or IPv6). */
int pxy_addr_equal(const struct sockaddr *a, const struct sockaddr *b);
/** The port, host order; 0 for other families. */
uint16_t pxy_addr_port(const struct sockaddr *a);

#endif
