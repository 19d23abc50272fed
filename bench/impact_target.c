/* The target of bench_impact.py: N GiB (a decimal) of written memory, and one thread (pinned to CPU 0) that
 * mmaps and munmaps 64 KiB in a loop, recording each iteration's latency. It prints "ready TID" (the probe
 * thread's id, for tracing) once its memory is written. Commands on stdin: "reset" clears the record;
 * "stats" prints "count p50 p99 p999 max" in microseconds; "stalls" prints one line "start_s mmap_us
 * munmap_us total_us" per iteration of more than STALL_US since the last reset (start: CLOCK_MONOTONIC,
 * the clock of ftrace's "mono" and Python's time.monotonic), then "end". */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#define MAXS (1 << 24)
static unsigned *lat; /* microseconds * 16 */
static volatile long n;
static volatile int resetting;
#define STALL_US 1000.0
#define MAXSTALL 4096
static struct { double t0, mmap_us, munmap_us, us; } stall[MAXSTALL];
static volatile long nstall;
static volatile pid_t probe_tid;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static void *loop(void *arg)
{
	cpu_set_t s; CPU_ZERO(&s); CPU_SET(0, &s); sched_setaffinity(0, sizeof(s), &s);
	probe_tid = (pid_t)syscall(SYS_gettid);
	for (;;) {
		double t0 = now();
		char *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		p[0] = 1;
		double t1 = now();
		munmap(p, 65536);
		double t2 = now();
		double us = (t2 - t0) * 1e6;
		if (!resetting && n < MAXS) lat[n++] = (unsigned)(us * 16);
		if (!resetting && us > STALL_US && nstall < MAXSTALL) {
			long i = nstall;
			stall[i].t0 = t0; stall[i].mmap_us = (t1 - t0) * 1e6; stall[i].munmap_us = (t2 - t1) * 1e6;
			stall[i].us = us; nstall = i + 1;
		}
	}
	return arg;
}

static int cmp(const void *a, const void *b) { unsigned x = *(const unsigned *)a, y = *(const unsigned *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv)
{
	double gib = argc > 1 ? strtod(argv[1], 0) : 1; /* fractions allowed for smoke runs */
	size_t sz = (size_t)(gib * (1 << 30)) & ~(size_t)4095;
	char *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (size_t i = 0; i < sz; i += 4096) mem[i] = 1;
	lat = malloc(sizeof(unsigned) * MAXS);
	pthread_t t; pthread_create(&t, 0, loop, 0);
	while (!probe_tid) usleep(1000);
	printf("ready %d\n", (int)probe_tid); fflush(stdout);
	char line[64];
	while (fgets(line, sizeof line, stdin)) {
		if (!strncmp(line, "reset", 5)) { resetting = 1; n = 0; nstall = 0; resetting = 0; printf("ok\n"); }
		else if (!strncmp(line, "stats", 5)) {
			resetting = 1; long m = n; unsigned *c = malloc(sizeof(unsigned) * (m ? m : 1));
			memcpy(c, lat, sizeof(unsigned) * m); resetting = 0;
			qsort(c, m, sizeof(unsigned), cmp);
#define Q(f) (m ? c[(long)((m - 1) * (f))] / 16.0 : 0)
			printf("%ld %.1f %.1f %.1f %.1f\n", m, Q(0.5), Q(0.99), Q(0.999), Q(1.0));
			free(c);
		} else if (!strncmp(line, "stalls", 6)) {
			resetting = 1; long m = nstall;
			for (long i = 0; i < m; i++)
				printf("%.6f %.1f %.1f %.1f\n", stall[i].t0, stall[i].mmap_us, stall[i].munmap_us, stall[i].us);
			resetting = 0; printf("end\n");
		}
		fflush(stdout);
	}
	return 0;
}
