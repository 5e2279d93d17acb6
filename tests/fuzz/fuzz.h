/*
 * Shared by the fuzz targets and the corpus generator.
 *
 * A tap input is a sequence of frames: [op u8][len u16 big-endian][len bytes].
 * op & 3: 0 client->server bytes, 1 server->client bytes, 2 client EOF,
 * 3 server EOF. op & 4: first close the connection and start the next one
 * (its tap shares the input's session cache, so a later frame can resume a
 * session an earlier one negotiated). Engine completions are delivered
 * after every frame.
 */
#ifndef PXY_FUZZ_H
#define PXY_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_OP_C2S 0
#define FUZZ_OP_S2C 1
#define FUZZ_OP_EOF_C2S 2
#define FUZZ_OP_EOF_S2C 3
#define FUZZ_OP_NEXT_CONN 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
