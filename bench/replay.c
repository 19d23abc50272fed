/* The floor of `pmaps PID`'s kernel reads: replays a recorded list of its pagemap, kpageflags and
 * kpagecount preads (bench/bench.py --replay records them with strace from one run of pmaps on the
 * same still target), on THREADS threads that take the next 32 reads from a shared counter (the
 * best balance any reader could have), after the PAGEMAP_SCAN calls pmaps makes (whole address
 * space, present or swapped, 32 Ki pages a call: kernel/pagemap_scan.py) on the first thread
 * while the others start reading. No pacing, no Python, no numpy, no output: what is left is
 * the kernel's per-page work, which pmaps cannot do with less.
 *
 *   replay PID OPS_FILE [THREADS]     OPS_FILE: one "file count offset" per line,
 *                                     file 0 pagemap, 1 kpageflags, 2 kpagecount
 * Prints the wall seconds of the reads and the bytes read on stderr; exit 1 on any error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define PAGEMAP_SCAN 0xC0606610UL
#define CAT_PRESENT (1UL << 3)
#define CAT_SWAPPED (1UL << 4)
#define CAT_PFNZERO (1UL << 5)
#define CAT_HUGE (1UL << 6)
#define VEC_LEN 16384
#define MAX_PAGES 32768
#define TASK_SIZE_MAX 0x7FFFFFFFF000UL
#define GRAIN 32

struct pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct op { int file; size_t count; off_t offset; };

static struct op *ops;
static size_t nops, maxcount;
static int fds[3];
static atomic_size_t next_op;
static atomic_ulong total_bytes;

static void die(const char *what) { perror(what); exit(1); }

static void scan(void) {
    static uint64_t vec[3 * VEC_LEN];
    uint64_t cur = 0;
    while (cur < TASK_SIZE_MAX) {
        struct pm_scan_arg a = {sizeof a, 0, cur, TASK_SIZE_MAX, 0, (uint64_t)(uintptr_t)vec, VEC_LEN, MAX_PAGES,
                                0, 0, CAT_PRESENT | CAT_SWAPPED, CAT_PFNZERO | CAT_HUGE};
        long n = ioctl(fds[0], PAGEMAP_SCAN, &a);
        if (n < 0) die("PAGEMAP_SCAN");
        if (n < VEC_LEN && a.walk_end >= TASK_SIZE_MAX) break;
        uint64_t nxt = a.walk_end;
        if (n && vec[3 * n - 2] > nxt) nxt = vec[3 * n - 2]; /* 6.18's walk_end quirk, as pmaps */
        if (nxt <= cur) break;
        cur = nxt;
    }
}

static void *reader(void *first) {
    char *buf = malloc(maxcount ? maxcount : 1);
    if (!buf) die("malloc");
    if (first) scan();
    unsigned long got = 0;
    for (;;) {
        size_t i = atomic_fetch_add(&next_op, GRAIN);
        if (i >= nops) break;
        size_t end = i + GRAIN < nops ? i + GRAIN : nops;
        for (; i < end; i++) {
            ssize_t r = pread(fds[ops[i].file], buf, ops[i].count, ops[i].offset);
            if (r < 0) die("pread");
            got += (unsigned long)r;
        }
    }
    atomic_fetch_add(&total_bytes, got);
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: replay PID OPS_FILE [THREADS]\n"); return 2; }
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    if (threads < 1 || threads > 64) threads = 2;
    FILE *f = fopen(argv[2], "r");
    if (!f) die(argv[2]);
    size_t cap = 1 << 16;
    ops = malloc(cap * sizeof *ops);
    int file; size_t count; long long offset;
    while (fscanf(f, "%d %zu %lld", &file, &count, &offset) == 3) {
        if (file < 0 || file > 2) { fprintf(stderr, "replay: bad file index %d\n", file); return 1; }
        if (nops == cap && !(ops = realloc(ops, (cap *= 2) * sizeof *ops))) die("realloc");
        ops[nops++] = (struct op){file, count, (off_t)offset};
        if (count > maxcount) maxcount = count;
    }
    fclose(f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/pagemap", argv[1]);
    const char *names[3] = {path, "/proc/kpageflags", "/proc/kpagecount"};
    for (int k = 0; k < 3; k++)
        if ((fds[k] = open(names[k], O_RDONLY | O_CLOEXEC)) < 0) die(names[k]);
    pthread_t tid[64];
    for (int k = 1; k < threads; k++)
        if (pthread_create(&tid[k], NULL, reader, NULL)) die("pthread_create");
    reader((void *)1);
    for (int k = 1; k < threads; k++) pthread_join(tid[k], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "replay: %zu reads, %lu bytes, %.4f s\n", nops, (unsigned long)atomic_load(&total_bytes),
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
