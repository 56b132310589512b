/* mem: allocation that aborts on out-of-memory, scope-exit cleanup helpers, and arenas.
 * Ownership rule: a function returning memory says who frees it (a _new/_free pair, an
 * "x" allocator the caller frees, or an arena that frees everything at once). */
#ifndef HARRIER_LIB_MEM_H
#define HARRIER_LIB_MEM_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);
void *xmemdup(const void *p, size_t n);

/* Scope-exit cleanup, as bubblewrap and crun do:
 *     cleanup_free char *s = xstrdup("x");   freed when s leaves scope
 *     cleanup_fd int fd = open(...);        closed when fd leaves scope (if >= 0)
 * steal_pointer(&p) returns p and leaves NULL behind, to hand ownership on. */
void mem_cleanup_free(void *pp);
void mem_cleanup_fd(int *fdp);
#define cleanup_free __attribute__((cleanup(mem_cleanup_free)))
#define cleanup_fd __attribute__((cleanup(mem_cleanup_fd)))
void *mem_steal_pointer(void *pp);
#define steal_pointer(pp) mem_steal_pointer(pp)
int mem_steal_fd(int *fdp);

/* An arena: many allocations, one free. For per-job and per-parse data. */
struct arena_block;
struct arena {
    struct arena_block *head;
    size_t block_size;
};

void arena_init(struct arena *arena, size_t block_size); /* 0 = 16 KiB */
void *arena_alloc(struct arena *arena, size_t size);     /* zeroed, 16-byte aligned */
char *arena_strdup(struct arena *arena, const char *s);
char *arena_strndup(struct arena *arena, const char *s, size_t n);
char *arena_printf(struct arena *arena, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(struct arena *arena); /* frees every block; the arena can be reused */

#endif
