/* The bounds-checked cursor: whole reads or none, exact sub-blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tls/cursor.h"

static void test_integers(void **state)
{
	static const uint8_t b[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	struct pxy_cur c = pxy_cur_make(b, sizeof(b));
	uint8_t u8;
	uint16_t u16;
	uint32_t u24, u32;

	(void)state;
	assert_int_equal(pxy_cur_u8(&c, &u8), PXY_OK);
	assert_int_equal(u8, 1);
	assert_int_equal(pxy_cur_u16(&c, &u16), PXY_OK);
	assert_int_equal(u16, 0x0203);
	assert_int_equal(pxy_cur_u24(&c, &u24), PXY_OK);
	assert_int_equal(u24, 0x040506);
	assert_int_equal(pxy_cur_u32(&c, &u32), PXY_OK);
	assert_int_equal(u32, 0x0708090a);
	assert_int_equal(c.left, 0);
	assert_int_equal(pxy_cur_end(&c), PXY_OK);
}

/* A failed read leaves the cursor where it was. */
static void test_failure_keeps_position(void **state)
{
	static const uint8_t b[] = { 0xaa, 0xbb };
	struct pxy_cur c = pxy_cur_make(b, sizeof(b));
	uint32_t v;
	const uint8_t *p;
	uint8_t tmp[4];

	(void)state;
	assert_int_equal(pxy_cur_u24(&c, &v), PXY_E_TRUNCATED);
	assert_int_equal(pxy_cur_u32(&c, &v), PXY_E_TRUNCATED);
	assert_int_equal(pxy_cur_bytes(&c, 3, &p), PXY_E_TRUNCATED);
	assert_int_equal(pxy_cur_copy(&c, tmp, 3), PXY_E_TRUNCATED);
	assert_int_equal(pxy_cur_skip(&c, 3), PXY_E_TRUNCATED);
	assert_ptr_equal(c.p, b);
	assert_int_equal(c.left, 2);
	assert_int_equal(pxy_cur_end(&c), PXY_E_TRAILING);
	assert_int_equal(pxy_cur_skip(&c, 2), PXY_OK);
	assert_int_equal(pxy_cur_end(&c), PXY_OK);

	c = pxy_cur_make(NULL, 0);
	assert_int_equal(pxy_cur_u8(&c, tmp), PXY_E_TRUNCATED);
	assert_int_equal(pxy_cur_skip(&c, 0), PXY_OK);
}

static void test_sub_blocks(void **state)
{
	/* u16 block of 5: { u8 block of 2: {7, 8}, 9, 10, 11 }, then 12 */
	static const uint8_t b[] = { 0, 5, 2, 7, 8, 9, 10, 12 };
	struct pxy_cur c = pxy_cur_make(b, sizeof(b)), outer, inner;
	uint8_t v;

	(void)state;
	assert_int_equal(pxy_cur_sub_u16(&c, &outer), PXY_OK);
	assert_int_equal(outer.left, 5);
	assert_int_equal(pxy_cur_sub_u8(&outer, &inner), PXY_OK);
	assert_int_equal(inner.left, 2);
	assert_int_equal(pxy_cur_end(&outer), PXY_E_TRAILING);
	assert_int_equal(pxy_cur_skip(&outer, 2), PXY_OK);
	assert_int_equal(pxy_cur_end(&outer), PXY_OK);
	assert_int_equal(pxy_cur_u8(&c, &v), PXY_OK);
	assert_int_equal(v, 12);
}

/* A length prefix that claims more than its enclosing block holds. */
static void test_nested_length_overflow(void **state)
{
	static const uint8_t b[] = { 0, 4, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	static const uint8_t c24[] = { 0xff, 0xff, 0xff, 0 };
	struct pxy_cur c = pxy_cur_make(b, sizeof(b)), outer, inner;
	const uint8_t *start;

	(void)state;
	assert_int_equal(pxy_cur_sub_u16(&c, &outer), PXY_OK);
	start = outer.p;
	/* the inner block claims 9 bytes, the outer has 2 left after its prefix */
	assert_int_equal(pxy_cur_sub_u16(&outer, &inner), PXY_E_TRUNCATED);
	assert_ptr_equal(outer.p, start); /* prefix not consumed either */
	assert_int_equal(outer.left, 4);

	c = pxy_cur_make(c24, sizeof(c24));
	assert_int_equal(pxy_cur_sub_u24(&c, &inner), PXY_E_TRUNCATED);
	assert_int_equal(c.left, 4);
	c = pxy_cur_make(c24, 1);
	assert_int_equal(pxy_cur_sub_u8(&c, &inner), PXY_E_TRUNCATED);
	assert_int_equal(c.left, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_failure_keeps_position),
		cmocka_unit_test(test_sub_blocks),
		cmocka_unit_test(test_nested_length_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
