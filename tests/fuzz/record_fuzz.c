/* libFuzzer target: the record reader on any byte stream, split at every size. */
#include <stdlib.h>

#include "fuzz.h"
#include "tls/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pxy_rec_rd r;
	size_t step;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 31 + 1;
	pxy_rec_init(&r);
	for (size_t off = 1; off < size; off += step) {
		struct pxy_cur in = pxy_cur_make(data + off, step < size - off ? step : size - off);

		for (;;) {
			struct pxy_record rec;
			int ev = pxy_rec_next(&r, &in, &rec);

			if (ev < 0)
				goto out;
			if (ev == PXY_REC_MORE)
				break;
			if (ev == PXY_REC_HEADER) {
				if (r.h.len & 1)
					pxy_rec_skip(&r);
				continue;
			}
			free(rec.buf);
		}
	}
out:
	pxy_rec_free(&r);
	return 0;
}
