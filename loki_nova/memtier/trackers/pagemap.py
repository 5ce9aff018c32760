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

"""Reading /proc/PID/pagemap: one 64-bit entry per virtual page.

Bit 63: present in RAM; bit 62: swapped; bit 55: soft-dirty; bits 0-54:
the page frame number (zero unless the reader has CAP_SYS_ADMIN).
"""

import os

import numpy as np

from loki_nova.memtier.guest import PAGE_SIZE

PRESENT = np.uint64(1 << 63)
SOFT_DIRTY = np.uint64(1 << 55)
PFN_MASK = np.uint64((1 << 55) - 1)


def read(proc, start, npages):
    """Entries for ``npages`` pages from virtual address ``start`` of the
    process whose /proc/PID directory ``proc`` (``kernfs.ProcessDir``)
    is."""
    out = np.zeros(npages, dtype=np.uint64)
    with proc.open('pagemap') as f:
        view = memoryview(out).cast('B')
        offset = (start // PAGE_SIZE) * 8
        got = 0
        while got < len(view):
            try:
                n = os.preadv(f.fileno(), [view[got:]], offset + got)
            except OSError as exc:
                raise proc.explain(exc, 'pagemap', 'read') from None
            if n <= 0:
                break
            got += n
    return out


def read_layout(proc, layout):
    """Entries for every page of the guest's RAM, range after range in
    the layout's (address) order."""
    if not layout.ranges:
        return np.zeros(0, np.uint64)
    return np.concatenate([read(proc, r.start, r.size // PAGE_SIZE)
                           for r in layout.ranges])


def per_chunk(layout, flags):
    """Number of True ``flags`` (one per page, in ``read_layout`` order)
    in every chunk."""
    if not len(layout):
        return np.zeros(0, dtype=np.int64)
    pages = (layout.sizes // PAGE_SIZE).astype(np.int64)
    first = np.cumsum(pages) - pages
    return np.add.reduceat(np.asarray(flags, dtype=np.int64), first)


def scale(counts, layout):
    """Pages touched per chunk → 0..SAMPLE_SCALE, any touch at least 1."""
    from loki_nova.memtier.trackers import SAMPLE_SCALE
    pages = (layout.sizes // PAGE_SIZE).astype(np.int64)
    out = -(-counts * SAMPLE_SCALE // np.maximum(pages, 1))
    return np.minimum(out, SAMPLE_SCALE).astype(np.uint8)
