#include "lib/mem.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

Test(arena, allocations_are_aligned_zeroed_and_freed_together)
{
    struct arena a;
    arena_init(&a, 64);
    for (int i = 0; i < 1000; i++) {
        unsigned char *p = arena_alloc(&a, (size_t)(i % 100) + 1);
        cr_assert_eq((uintptr_t)p % 16, 0);
        for (int j = 0; j < i % 100 + 1; j++)
            cr_assert_eq(p[j], 0);
        memset(p, 0xff, (size_t)(i % 100) + 1);
    }
    char *big = arena_alloc(&a, 100000); /* larger than a block */
    memset(big, 1, 100000);
    cr_assert_str_eq(arena_strdup(&a, "job"), "job");
    cr_assert_str_eq(arena_printf(&a, "%s-%d", "step", 3), "step-3");
    cr_assert_str_eq(arena_strndup(&a, "abcdef", 3), "abc");
    arena_free(&a);
    cr_assert_null(a.head);
}

static int closed_fd = -1;

static void open_and_leave(void)
{
    cleanup_fd int fd = open("/dev/null", O_RDONLY);
    closed_fd = fd;
}

Test(mem, cleanup_fd_closes_on_scope_exit)
{
    open_and_leave();
    cr_assert_geq(closed_fd, 0);
    cr_assert_eq(fcntl(closed_fd, F_GETFD), -1);
}

Test(mem, steal_pointer_hands_ownership_on)
{
    char *kept;
    {
        cleanup_free char *s = xstrdup("owned");
        kept = steal_pointer(&s);
        cr_assert_null(s);
    }
    cr_assert_str_eq(kept, "owned");
    free(kept);
    char *p = xasprintf("%d-%s", 7, "x");
    cr_assert_str_eq(p, "7-x");
    free(p);
}
