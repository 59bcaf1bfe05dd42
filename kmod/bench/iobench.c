// SPDX-License-Identifier: GPL-2.0
/*
 * iobench: O_DIRECT throughput of one block device, for the quiesce boot bench.
 *
 * usage: iobench DEV randwrite|randread|seqwrite|seqread BLOCKSIZE SECONDS
 * prints: MODE BLOCKSIZE MB/s IOPS OPS
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	unsigned long long size, span, off = 0, ops = 0, seed = 88172645463325252ULL;
	double start, secs;
	size_t bs;
	int fd, write, rnd;
	void *buf;

	if (argc != 5) {
		fprintf(stderr, "usage: iobench DEV randwrite|randread|seqwrite|seqread BLOCKSIZE SECONDS\n");
		return 2;
	}
	write = strstr(argv[2], "write") != NULL;
	rnd = strncmp(argv[2], "rand", 4) == 0;
	bs = strtoul(argv[3], NULL, 0);
	secs = atof(argv[4]);
	fd = open(argv[1], (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0) {
		perror(argv[1]);
		return 1;
	}
	if (posix_memalign(&buf, 4096, bs)) {
		perror("posix_memalign");
		return 1;
	}
	memset(buf, 0x5a, bs);
	span = size / bs;
	if (span == 0) {
		fprintf(stderr, "%s: smaller than one block\n", argv[1]);
		return 1;
	}
	start = now();
	while (now() - start < secs) {
		ssize_t n;

		if (rnd) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			off = (seed % span) * bs;
		}
		n = write ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);
		if (n != (ssize_t)bs) {
			perror("io");
			return 1;
		}
		ops++;
		if (!rnd)
			off = (off + bs) % (span * bs);
	}
	secs = now() - start;
	printf("%s %zu %.1f %.0f %llu\n", argv[2], bs, ops * bs / secs / 1e6, ops / secs, ops);
	return 0;
}
