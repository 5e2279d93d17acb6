/*
 * XRT's own xclbin layout, where <xrt/xclbin.h> is installed, as numbers for
 * dev_emu_test.c to compare with host/device/axlf.h (the two headers declare
 * the same struct names, so they cannot meet in one file).
 */
#include <stddef.h>

#include "xrt_layout.h"

#if __has_include(<xrt/xclbin.h>)
#include <xrt/xclbin.h>

int xrt_layout(struct xrt_layout *l)
{
	l->header = offsetof(struct axlf, m_header);
	l->sections = offsetof(struct axlf, m_sections);
	l->header_size = sizeof(struct axlf_header);
	l->section_header_size = sizeof(struct axlf_section_header);
	l->mem_data_size = sizeof(struct mem_data);
	l->ip_data_size = sizeof(struct ip_data);
	l->ip_layout_data = offsetof(struct ip_layout, m_ip_data);
	l->connection_size = sizeof(struct connection);
	l->kind_ip_layout = IP_LAYOUT;
	l->kind_connectivity = CONNECTIVITY;
	l->kind_metadata = EMBEDDED_METADATA;
	l->kind_mem_topology = MEM_TOPOLOGY;
	l->kind_bitstream = BITSTREAM;
	return 1;
}
#else
int xrt_layout(struct xrt_layout *l)
{
	(void)l;
	return 0;
}
#endif
