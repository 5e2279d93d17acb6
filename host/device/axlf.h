/*
 * The xclbin container (axlf), as XRT and v++ lay it out: a fixed header, a
 * table of sections, the sections. Only what proxyssl writes and reads is
 * declared here; tests/device/dev_emu_test.c checks every offset against
 * XRT's own <xrt/xclbin.h> where that header is installed.
 */
#ifndef PXY_AXLF_H
#define PXY_AXLF_H

#include <stddef.h>
#include <stdint.h>

#define AXLF_MAGIC "xclbin2"

enum axlf_kind {
	AXLF_BITSTREAM = 0,
	AXLF_EMBEDDED_METADATA = 2,
	AXLF_MEM_TOPOLOGY = 6,
	AXLF_CONNECTIVITY = 7,
	AXLF_IP_LAYOUT = 8,
	AXLF_CLOCK_FREQ_TOPOLOGY = 11,
	AXLF_BUILD_METADATA = 14,
};

enum axlf_mode { AXLF_MODE_FLAT = 0, AXLF_MODE_HW_EMU = 4, AXLF_MODE_SW_EMU = 5 };

struct axlf_section_header {
	uint32_t kind;
	char name[16];
	uint64_t offset;
	uint64_t size;
};

struct axlf_header {
	uint64_t length;       /* whole file */
	uint64_t time_stamp;
	uint64_t feature_rom_time_stamp;
	uint16_t version_patch;
	uint8_t version_major;
	uint8_t version_minor;
	uint16_t mode;         /* enum axlf_mode */
	uint16_t action_mask;
	uint8_t rom_uuid[16];
	uint8_t platform_vbnv[64];
	uint8_t uuid[16];
	char debug_bin[16];
	uint32_t num_sections;
};

struct axlf {
	char magic[8];               /* "xclbin2\0" */
	int32_t signature_length;    /* -1: unsigned */
	uint8_t reserved[28];        /* 0xff */
	uint8_t key_block[256];      /* 0xff */
	uint64_t unique_id;
	struct axlf_header header;
	struct axlf_section_header sections[]; /* num_sections of them */
};

/* MEM_TOPOLOGY */
enum axlf_mem_type { AXLF_MEM_DDR4 = 1, AXLF_MEM_HBM = 6 };
struct axlf_mem_data {
	uint8_t type;
	uint8_t used;
	uint8_t padding[6];
	uint64_t size_kb;
	uint64_t base_address;
	char tag[16];
};
struct axlf_mem_topology {
	int32_t count;
	struct axlf_mem_data mem[];
};

/* IP_LAYOUT */
#define AXLF_IP_KERNEL 1
#define AXLF_IP_INT_ENABLE 0x1u
#define AXLF_IP_CONTROL_SHIFT 8 /* AP_CTRL_HS 0, AP_CTRL_CHAIN 1 */
struct axlf_ip_data {
	uint32_t type;
	uint32_t properties;
	uint64_t base_address;
	uint8_t name[64]; /* "kernel:instance" */
};
struct axlf_ip_layout {
	int32_t count;
	struct axlf_ip_data ip[];
};

/* CONNECTIVITY */
struct axlf_connection {
	int32_t arg_index;
	int32_t ip_layout_index;
	int32_t mem_data_index;
};
struct axlf_connectivity {
	int32_t count;
	struct axlf_connection conn[];
};

_Static_assert(sizeof(struct axlf_section_header) == 40, "axlf section header");
_Static_assert(offsetof(struct axlf, header) == 304, "axlf header offset");
_Static_assert(offsetof(struct axlf, sections) == 456, "axlf sections offset");
_Static_assert(sizeof(struct axlf_mem_data) == 40, "mem_data");
_Static_assert(offsetof(struct axlf_mem_topology, mem) == 8, "mem_topology");
_Static_assert(sizeof(struct axlf_ip_data) == 80, "ip_data");
_Static_assert(offsetof(struct axlf_ip_layout, ip) == 8, "ip_layout");
_Static_assert(sizeof(struct axlf_connection) == 12, "connection");

#endif
