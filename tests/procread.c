/* Print /proc/PID/NAME: a static binary maps no shared library, so reading smaps_rollup with it
 * does not change the map counts of the target's library pages (the observer-free oracle). */
#include <stdio.h>

int main(int argc, char **argv)
{
	char path[256], buf[65536];
	size_t n;
	FILE *f;

	if (argc != 3)
		return 2;
	snprintf(path, sizeof(path), "/proc/%s/%s", argv[1], argv[2]);
	f = fopen(path, "r");
	if (!f)
		return 1;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stdout);
	return 0;
}
