#include "util/addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "util/util.h"

int pxy_addr_split(const char *s, unsigned min_port, char *host, size_t host_len, uint16_t *port, char *err,
		   size_t err_len)
{
	const char *p, *h = s;
	size_t hl;
	uint64_t v;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			goto bad;
		h = s + 1;
		hl = (size_t)(end - h);
		p = end + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon || strchr(s, ':') != colon)
			goto bad; /* an IPv6 address needs brackets */
		hl = (size_t)(colon - s);
		p = colon + 1;
	}
	if (hl == 0 || hl >= host_len)
		goto bad;
	/* getaddrinfo() would quietly cut a port over 65535 to 16 bits */
	if (pxy_parse_u64(p, min_port, 65535, &v)) {
		snprintf(err, err_len, "%s: port '%s' is not a number in %u..65535", s, p, min_port);
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)v;
	return 0;
bad:
	snprintf(err, err_len, "%s: expected ADDR:PORT or [IPv6]:PORT", s);
	return -1;
}

int pxy_addr_resolve(const char *s, unsigned min_port, struct sockaddr_storage *ss, socklen_t *len, char *err,
		     size_t err_len)
{
	char host[256], port[8];
	struct addrinfo hints, *ai = NULL;
	uint16_t pn;
	int r;

	if (pxy_addr_split(s, min_port, host, sizeof(host), &pn, err, err_len) < 0)
		return -1;
	snprintf(port, sizeof(port), "%u", pn);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	r = getaddrinfo(host, port, &hints, &ai);
	if (r != 0) {
		snprintf(err, err_len, "%s: %s", s, gai_strerror(r));
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

int pxy_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
		return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
	}
	return 0;
}

uint16_t pxy_addr_port(const struct sockaddr *a)
{
	if (a->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)a)->sin_port);
	if (a->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
	return 0;
}
