/* Small helpers shared by the daemon: time, hex, wiping. */
#ifndef PXY_UTIL_H
#define PXY_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define PXY_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PXY_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PXY_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PXY_UNUSED(x) ((void)(x))

/** Monotonic nanoseconds. */
uint64_t pxy_now_ns(void);
/** Wall-clock time, microseconds since the Unix epoch. */
uint64_t pxy_unix_us(void);
/** Wall-clock milliseconds since the epoch. */
uint64_t pxy_wall_ms(void);
struct timespec;
/** *ts = now + ms on CLOCK_REALTIME (a deadline for pthread_cond_timedwait). */
void pxy_deadline_ms(struct timespec *ts, unsigned ms);

/** Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void pxy_hex(char *out, const uint8_t *p, size_t n);
/** Hex with ':' between bytes, upper case (fingerprints); out holds 3n bytes. */
void pxy_hex_colon(char *out, const uint8_t *p, size_t n);

/** strtoull with full validation; 0 on success. */
int pxy_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/** Sizes with an optional K/M/G suffix (powers of 1024). */
int pxy_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

#endif
