/* Pte markers: page table entries that pagemap reports with its "swapped" bit (62) but that are
 * not swap (fs/proc/task_mmu.c pte_to_pagemap_entry, 6.x). Each region is 64 pages; the program
 * prints "NAME START" per region it made (or "SKIP NAME why"), then "READY", and waits for stdin
 * to close.
 *   guard:    anonymous, all written, then MADV_GUARD_INSTALL (6.13+) on pages 8-11
 *   uffd_anon: anonymous, pages 0-7 written, uffd-wp with WP_UNPOPULATED (6.4+): markers on 8-63
 *   uffd_shm:  memfd shared, all written, uffd-wp, MADV_DONTNEED on 0-7: markers on 0-7
 * userfaultfd is opened UFFD_USER_MODE_ONLY, so it works unprivileged too.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGES 64
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1ULL << 13)
#endif

static long page;

static char *region(int shared) {
    if (!shared)
        return mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int fd = memfd_create("pmaps-markers", 0);
    if (fd < 0 || ftruncate(fd, PAGES * page))
        return MAP_FAILED;
    return mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
}

static int wp(char *a, uint64_t features, const char **why) {
    int u = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (u < 0) { *why = "userfaultfd"; return -1; }
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (ioctl(u, UFFDIO_API, &api)) { *why = "UFFDIO_API"; return -1; }
    struct uffdio_register r = {.range = {(uintptr_t)a, PAGES * page}, .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(u, UFFDIO_REGISTER, &r)) { *why = "UFFDIO_REGISTER"; return -1; }
    struct uffdio_writeprotect w = {.range = {(uintptr_t)a, PAGES * page}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(u, UFFDIO_WRITEPROTECT, &w)) { *why = "UFFDIO_WRITEPROTECT"; return -1; }
    return 0;  /* the descriptor stays open: closing it would unregister the range */
}

int main(void) {
    page = sysconf(_SC_PAGESIZE);
    const char *why = "mmap";
    char *g = region(0);
    if (g != MAP_FAILED) {
        memset(g, 0x5a, PAGES * page);
        if (madvise(g + 8 * page, 4 * page, MADV_GUARD_INSTALL) == 0)
            printf("guard %lx\n", (unsigned long)(uintptr_t)g);
        else
            printf("SKIP guard MADV_GUARD_INSTALL\n");
    }
    char *a = region(0);
    if (a != MAP_FAILED) {
        memset(a, 0x5a, 8 * page);
        if (wp(a, UFFD_FEATURE_WP_UNPOPULATED, &why) == 0)
            printf("uffd_anon %lx\n", (unsigned long)(uintptr_t)a);
        else
            printf("SKIP uffd_anon %s\n", why);
    }
    char *s = region(1);
    if (s != MAP_FAILED) {
        memset(s, 0x5a, PAGES * page);
        if (wp(s, UFFD_FEATURE_WP_HUGETLBFS_SHMEM, &why) == 0 && madvise(s, 8 * page, MADV_DONTNEED) == 0)
            printf("uffd_shm %lx\n", (unsigned long)(uintptr_t)s);
        else
            printf("SKIP uffd_shm %s\n", why);
    }
    printf("READY\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    return 0;
}
