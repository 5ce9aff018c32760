/*
 * Copyright 2026 The loki-nova developers
 *
 * Licensed under the Apache License, Version 2.0 (the "License"); you may
 * not use this file except in compliance with the License. You may obtain
 * a copy of the License at
 *
 *      http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 * WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 * License for the specific language governing permissions and limitations
 * under the License.
 */

/*
 * guestload: the workload inside a test VM (tests/libvirt_rig.py builds it
 * statically into the guest's initramfs and runs it from /init).
 *
 *   guestload DATA_MB HOT_MB VERIFY_EVERY_S
 *
 * Fills DATA_MB MiB of locked anonymous memory with a pattern that is a
 * function of each 8-byte word's index, so every page holds different
 * bytes and any page that comes back wrong or from elsewhere is found.
 * Prints the guest-physical frame numbers of the first HOT_MB MiB (the hot
 * set) from /proc/self/pagemap, so the host can find those pages in QEMU's
 * RAM.  Then, for ever: reads one word of every hot page every 20 ms,
 * prints a progress line every 10 s and, every VERIFY_EVERY_S seconds,
 * checks every word against the pattern and prints
 *
 *   guestload: verify N: P pages, B bad, sum S (expected E) ok|BAD
 *
 * Everything goes to stdout (the serial console).
 */

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WORDS (PAGE / sizeof(uint64_t))

static uint64_t pattern(uint64_t index)
{
    /* splitmix64 of the word's index */
    uint64_t z = index + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs of frames, eight to a line: "guestload: hot pfn a-b c-d ...". */
static void print_run(uint64_t start, uint64_t last, unsigned long n,
                      int final)
{
    if (n % 8 == 1)
        printf("guestload: hot pfn");
    printf(" %llx-%llx", (unsigned long long)start, (unsigned long long)last);
    if (n % 8 == 0 || final)
        printf("\n");
}

static int by_value(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The hot pages' frames, sorted, as runs of consecutive frames. */
static void print_hot_frames(volatile uint64_t *mem, unsigned long pages)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    uint64_t *pfns = calloc(pages, sizeof(uint64_t));
    unsigned long i, n = 0, runs = 0;

    if (fd < 0 || !pfns) {
        printf("guestload: cannot read /proc/self/pagemap\n");
        return;
    }
    for (i = 0; i < pages; i++) {
        uint64_t entry;
        off_t at = ((uintptr_t)mem + i * PAGE) / PAGE * sizeof(entry);

        if (pread(fd, &entry, sizeof(entry), at) != sizeof(entry) ||
            !(entry >> 63)) {
            printf("guestload: hot page %lu not present\n", i);
            continue;
        }
        pfns[n++] = entry & ((1ULL << 55) - 1);
    }
    close(fd);
    qsort(pfns, n, sizeof(uint64_t), by_value);
    for (i = 0; i < n; i++) {
        uint64_t start = pfns[i];

        while (i + 1 < n && pfns[i + 1] == pfns[i] + 1)
            i++;
        runs++;
        print_run(start, pfns[i], runs, i + 1 == n);
    }
    printf("guestload: hot set is %lu pages in %lu runs\n", n, runs);
    free(pfns);
}

int main(int argc, char **argv)
{
    unsigned long data_mb, hot_mb, pages, hot_pages, i, j, round = 0;
    unsigned verify_every, verifies = 0;
    volatile uint64_t *mem;
    uint64_t expected = 0;
    double started, last_verify, last_progress;
    struct timespec pause = {0, 20 * 1000 * 1000};

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 4) {
        printf("usage: guestload DATA_MB HOT_MB VERIFY_EVERY_S\n");
        return 2;
    }
    data_mb = strtoul(argv[1], NULL, 10);
    hot_mb = strtoul(argv[2], NULL, 10);
    verify_every = strtoul(argv[3], NULL, 10);
    if (!data_mb || !hot_mb || hot_mb > data_mb || !verify_every) {
        printf("guestload: need 0 < HOT_MB <= DATA_MB and VERIFY_EVERY_S "
               "> 0\n");
        return 2;
    }
    pages = data_mb << 8;
    hot_pages = hot_mb << 8;
    mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        printf("guestload: cannot map %lu MiB\n", data_mb);
        return 1;
    }
    started = now();
    for (i = 0; i < pages * WORDS; i++) {
        mem[i] = pattern(i);
        expected += mem[i];
    }
    /* Locked (and compaction of locked pages off in /init), so the frame
     * numbers printed below stay where they are. */
    if (mlockall(MCL_CURRENT))
        printf("guestload: mlockall failed; frames may move\n");
    printf("guestload: filled %lu MiB in %.1f s, sum %016llx\n", data_mb,
           now() - started, (unsigned long long)expected);
    print_hot_frames(mem, hot_pages);
    printf("guestload: running, hot %lu MiB\n", hot_mb);
    last_verify = last_progress = now();
    for (;;) {
        for (i = 0; i < hot_pages; i++)
            (void)mem[i * WORDS];     /* volatile: a real read */
        nanosleep(&pause, NULL);
        round++;
        if (now() - last_progress >= 10) {
            printf("guestload: round %lu\n", round);
            last_progress = now();
        }
        if (now() - last_verify >= verify_every) {
            unsigned long bad = 0;
            uint64_t sum = 0;

            for (i = 0; i < pages; i++) {
                int page_bad = 0;

                for (j = 0; j < WORDS; j++) {
                    uint64_t v = mem[i * WORDS + j];

                    sum += v;
                    page_bad |= v != pattern(i * WORDS + j);
                }
                bad += page_bad;
            }
            verifies++;
            printf("guestload: verify %u: %lu pages, %lu bad, sum %016llx "
                   "(expected %016llx) %s\n", verifies, pages, bad,
                   (unsigned long long)sum, (unsigned long long)expected,
                   bad || sum != expected ? "BAD" : "ok");
            last_verify = now();
        }
    }
}
