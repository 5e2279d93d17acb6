#ifndef PXY_TEST_XRT_LAYOUT_H
#define PXY_TEST_XRT_LAYOUT_H

#include <stddef.h>

struct xrt_layout {
	size_t header, sections, header_size, section_header_size, mem_data_size, ip_data_size, ip_layout_data,
		connection_size;
	int kind_ip_layout, kind_connectivity, kind_metadata, kind_mem_topology, kind_bitstream;
};

/** 1 with XRT's numbers, 0 where XRT's header is not installed. */
int xrt_layout(struct xrt_layout *l);

#endif
