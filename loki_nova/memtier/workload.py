# Copyright 2026 The loki-nova developers
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""A workload to tier: a process with a block of memory and a hot region.

``python -m loki_nova.memtier.workload --size-mb 256 --hot-mb 32`` maps
``size`` MiB (2 MiB aligned), fills it with a deterministic pattern, keeps
its CRC, and from then on touches every page of the hot region in a loop
(reads, or with ``--write`` read-modify-writes that keep the bytes),
resting ``--pause-ms`` between passes; with ``--alternate-mb OFFSET``
the hot region moves between ``--hot-offset-mb`` and ``OFFSET`` every
``--alternate-ms`` (a program whose phases are shorter than the agent's
interval).  It
prints ``ready PID START END`` (addresses in hex), and with
``--register-dir`` registers itself with the process watcher.  Commands on
stdin, one per line, each answered on stdout:

* ``hot OFFSET_MB`` — move the hot region; ``ok``
* ``checksum`` — ``checksum ok`` if the memory still holds what was
  written, else ``checksum bad CRC``
* ``exit`` — ``bye`` and exit 0

Tests, the benchmarks and the demo run it under the real agent.
"""

import argparse
import mmap
import os
import sys
import threading
import zlib

import numpy as np

MiB = 1024 * 1024
ALIGN = 2 * MiB


class Workload:
    def __init__(self, size_mb, hot_mb, write=False, hot_offset_mb=0,
                 pause_ms=0, aliases=1, small_pages=False):
        if hot_mb > size_mb or size_mb <= 0:
            raise ValueError('need 0 < hot_mb <= size_mb, got %d and %d'
                             % (hot_mb, size_mb))
        if aliases < 1:
            raise ValueError('aliases must be >= 1, got %d' % aliases)
        self.size = size_mb * MiB
        if aliases == 1:
            self._maps = [mmap.mmap(-1, self.size + ALIGN,
                                    flags=mmap.MAP_PRIVATE
                                    | mmap.MAP_ANONYMOUS)]
            if small_pages:
                # 4 KiB pages only (like a guest's memfd RAM): each page
                # can then sit on its own node.
                self._maps[0].madvise(mmap.MADV_NOHUGEPAGE)
        else:
            # One memfd mapped ``aliases`` times: that many times the
            # address space, all of it present, on ``size`` of RAM.
            fd = os.memfd_create('loki-workload')
            os.ftruncate(fd, self.size)
            self._maps = [mmap.mmap(fd, self.size) for _ in range(aliases)]
            os.close(fd)
        whole = np.frombuffer(self._maps[0], dtype=np.uint8)
        base = whole.ctypes.data
        skip = (-base) % ALIGN if aliases == 1 else 0
        self.mem = whole[skip:skip + self.size]
        self.start = base + skip
        self.ranges = [(self.start, self.start + self.size)] + [
            (a, a + self.size) for a in
            (np.frombuffer(m, dtype=np.uint8).ctypes.data
             for m in self._maps[1:])]
        words = self.mem.view(np.uint64)
        words[:] = np.arange(len(words), dtype=np.uint64) * np.uint64(
            0x9E3779B97F4A7C15)
        self.crc = zlib.crc32(self.mem)
        for m in self._maps[1:]:
            # Fault every page of the other mappings in, so that they are
            # present there too (a query of an unfaulted page says absent).
            int(np.frombuffer(m, dtype=np.uint8)[::4096].sum(
                dtype=np.uint64))
        self.hot = hot_mb * MiB
        self.hot_offset = hot_offset_mb * MiB
        self.write = write
        self.pause = pause_ms / 1000.0
        self.stop = threading.Event()
        self.passes = 0

    @property
    def end(self):
        return self.start + self.size

    def set_hot(self, offset_mb):
        offset = offset_mb * MiB
        if offset < 0 or offset + self.hot > self.size:
            raise ValueError('hot region at %d MiB does not fit' % offset_mb)
        self.hot_offset = offset

    def touch(self):
        lo = self.hot_offset
        region = self.mem[lo:lo + self.hot]
        if self.write:
            pages = region[::4096]
            pages += np.uint8(0)
        else:
            int(region[::4096].sum(dtype=np.uint64))
        self.passes += 1

    def alternate(self, offset_mb, period_ms):
        """Move the hot region between where it is and ``offset_mb``
        every ``period_ms`` (in a thread of its own) until ``stop``."""
        if period_ms <= 0:
            raise ValueError('the alternation period must be > 0 ms, got '
                             '%r' % (period_ms,))
        places = [self.hot_offset // MiB, offset_mb]
        self.set_hot(offset_mb)
        self.set_hot(places[0])

        def flip():
            k = 0
            while not self.stop.wait(period_ms / 1000.0):
                k += 1
                self.set_hot(places[k % 2])

        thread = threading.Thread(target=flip, daemon=True)
        thread.start()
        return thread

    def run(self):
        # Between passes the toucher rests ``pause``, like a real program
        # that does more than touch memory (and leaves CPU to others).
        while not self.stop.is_set():
            self.touch()
            if self.pause:
                self.stop.wait(self.pause)

    def checksum_ok(self):
        crc = zlib.crc32(self.mem)
        return crc == self.crc, crc


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m loki_nova.memtier.workload')
    p.add_argument('--size-mb', type=int, default=256)
    p.add_argument('--hot-mb', type=int, default=32)
    p.add_argument('--hot-offset-mb', type=int, default=0)
    p.add_argument('--write', action='store_true')
    p.add_argument('--pause-ms', type=float, default=0)
    p.add_argument('--aliases', type=int, default=1,
                   help='map the memory this many times (one memfd): a '
                        'large address space on little RAM, for '
                        'benchmarks; the first mapping is the one used')
    p.add_argument('--register-dir')
    p.add_argument('--name', default='workload')
    p.add_argument('--policy', default='static')
    p.add_argument('--floor-mb', type=int, default=0)
    p.add_argument('--ceiling-mb', type=int)
    p.add_argument('--small-pages', action='store_true',
                   help='no transparent huge pages (4 KiB pages only)')
    p.add_argument('--alternate-mb', type=int,
                   help='move the hot region between --hot-offset-mb and '
                        'this offset every --alternate-ms')
    p.add_argument('--alternate-ms', type=float, default=500)
    args = p.parse_args(argv)
    w = Workload(args.size_mb, args.hot_mb, args.write, args.hot_offset_mb,
                 args.pause_ms, args.aliases, args.small_pages)
    if args.alternate_mb is not None:
        w.alternate(args.alternate_mb, args.alternate_ms)
    if args.register_dir:
        from loki_nova.memtier import guest
        from loki_nova.memtier.watcher import process
        process.register(args.register_dir, args.name, os.getpid(),
                         w.ranges,
                         guest.Policy(args.policy, args.floor_mb,
                                      args.ceiling_mb))
    toucher = threading.Thread(target=w.run, daemon=True)
    toucher.start()
    print('ready %d %x %x' % (os.getpid(), w.start, w.end), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == 'hot' and len(cmd) == 2:
            w.set_hot(int(cmd[1]))
            print('ok', flush=True)
        elif cmd[0] == 'checksum':
            ok, crc = w.checksum_ok()
            print('checksum ok' if ok else 'checksum bad %08x' % crc,
                  flush=True)
        elif cmd[0] == 'exit':
            break
        else:
            print('error unknown command %r' % line.strip(), flush=True)
    w.stop.set()
    toucher.join()
    if args.register_dir:
        from loki_nova.memtier.watcher import process
        process.unregister(args.register_dir, args.name)
    print('bye', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
