/*
 * libFuzzer target: the tap with forwarded secrets (TLS 1.3 above all): the
 * tap target's input, after a block of key log lines (see tap_fuzz.c).
 */
#define PXY_FUZZ_KEYLOG 1
#include "tap_fuzz.c"
