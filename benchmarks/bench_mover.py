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

"""The mover against raw move_pages(2), on the sandbox's two-tier kernel.

Run it inside the sandbox (it needs a second NUMA node)::

    python3 tools/sandbox.py run -- \
        .venv/bin/python benchmarks/bench_mover.py --json

The benchmark maps ``--size-mb`` of its own memory, touches it, and moves
those same pages node0 → node1 → node0 ``--repeat`` times, interleaving:

* raw: one move_pages call per direction with every page, nothing else;
* mover: ``Mover.move`` uncapped, with its batching, the identity check
  before every batch and per-page status handling.

``ratio`` = median mover pages/s ÷ median raw pages/s (target ≥ 0.8).
Then the mover moves the pages under a cap of a quarter of the raw rate
(at most 64 MiB/s), ``--repeat`` times: ``cap_error`` is the median of
|achieved ÷ cap − 1| (target ≤ 0.10).  Contents are checked after every
move.  Figures under TCG are far below a real host's; the ratios are what
count.
"""

import argparse
import os
import statistics
import sys
import time
import zlib

import numpy as np

import _report
from loki_nova.conf import memtier as memtier_conf
from loki_nova.memtier import guest
from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier import workload

MiB = 1024 * 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-mb', type=int, default=128)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--batch-pages', type=int, default=None,
                        help='pages per move_pages call of the mover '
                             '(default: [memtier] move_batch_pages)')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    if args.batch_pages is None:
        args.batch_pages = next(o.default for o in memtier_conf.memtier_opts
                                if o.name == 'move_batch_pages')
    kfs = kernfs.KernelFS()
    if not kfs.exists('sys/devices/system/node/node1'):
        parser.exit(2, 'bench_mover: needs a second NUMA node; run it in the '
                       'sandbox (python3 tools/sandbox.py run -- ...)\n')
    w = workload.Workload(args.size_mb, 1)
    pid = os.getpid()
    pages = np.arange(w.start, w.end, 4096, dtype=np.uint64)
    me = guest.Guest('bench', guest.identify(kfs, pid),
                     (guest.RamRange(w.start, w.end),),
                     guest.Policy('static', 0), 'process')

    def check(node):
        where = mover.move_pages(pid, pages)
        assert (where == node).all(), 'pages not on node %d' % node
        assert w.checksum_ok()[0], 'contents changed'

    def raw(node):
        t0 = time.perf_counter()
        mover.move_pages(pid, pages, node)
        return len(pages) / (time.perf_counter() - t0)

    def moved(node, limiter):
        res = mover.Mover(limiter, batch_pages=args.batch_pages).move(
            pid, pages, node, verify=lambda: guest.verify(kfs, me))
        assert res.placed == len(pages), res
        return res.placed / res.seconds

    raw_rates, mover_rates = [], []
    for _ in range(args.repeat):
        for node in (1, 0):
            raw_rates.append(raw(node))
            check(node)
        for node in (1, 0):
            mover_rates.append(moved(node, mover.RateLimiter(1 << 50)))
            check(node)
    raw_pps = statistics.median(raw_rates)
    mover_pps = statistics.median(mover_rates)
    cap = min(raw_pps * 4096 / 4, 64 * MiB)
    errors = []
    for i in range(args.repeat):
        node = 1 - i % 2
        achieved = moved(node, mover.RateLimiter(cap)) * 4096
        check(node)
        errors.append(abs(achieved / cap - 1))
    report = {
        'pages': len(pages),
        'batch_pages': args.batch_pages,
        'repeat': args.repeat,
        'raw_pages_per_s': round(raw_pps),
        'mover_pages_per_s': round(mover_pps),
        'ratio': round(mover_pps / raw_pps, 3),
        'cap_mb_per_s': round(cap / MiB, 2),
        'cap_error': round(statistics.median(errors), 4),
        'cap_error_max': round(max(errors), 4),
        'crc': '%08x' % zlib.crc32(w.mem),
    }
    _report.emit(report, args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
