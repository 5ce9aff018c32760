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

"""Idle-page tracking: which pages were accessed since they were marked
idle.

Each sample reads the guest's present pages and their frame numbers from
/proc/PID/pagemap, reads their bits in /sys/kernel/mm/page_idle/bitmap (a
set bit: not accessed since marked), and marks exactly those frames idle
again.  Only frames of managed guests are ever written: marking a frame
idle clears the accessed bits of every mapping of it, so touching other
frames would disturb other processes' page aging.

Needs CONFIG_IDLE_PAGE_TRACKING, CAP_SYS_ADMIN (frame numbers) and, for
another user's process, CAP_DAC_READ_SEARCH (pagemap is mode 0400); the
systemd unit grants both only in the drop-in its comments give.  No
Debian kernel package offers it (bookworm's 6.1, bookworm-backports' 6.12
and this build machine's kernel all have it off), so this tracker is tested
against a directory tree that stands in for pagemap and the bitmap
(tests/unit/test_trackers.py), not against a real kernel.
"""

import os

import numpy as np

from loki_nova.memtier import guest as guest_mod
from loki_nova.memtier import kernfs as kernfs_mod
from loki_nova.memtier import trackers
from loki_nova.memtier.trackers import pagemap

BITMAP = 'sys/kernel/mm/page_idle/bitmap'
STATUS = 'proc/self/status'
CAP_SYS_ADMIN = 21


def has_cap_sys_admin(kfs):
    """Whether this process has CAP_SYS_ADMIN in its effective set, per
    its status file; None when that file cannot be read."""
    try:
        text = kfs.read_text(STATUS)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith('CapEff:'):
            return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    return None


class IdlePageTracker(trackers.Tracker):
    name = 'idle_page'

    def __init__(self, kfs):
        self.kfs = kfs
        if not kfs.exists(BITMAP):
            raise trackers.TrackerUnavailable(
                'the kernel has no %s (needs CONFIG_IDLE_PAGE_TRACKING)'
                % kfs.path(BITMAP))
        if has_cap_sys_admin(kfs) is False:
            # Without it pagemap shows no frame numbers, and every sample
            # would fail.
            raise trackers.TrackerUnavailable(
                'the agent lacks CAP_SYS_ADMIN, which reading page frame '
                'numbers needs (the systemd unit does not grant it; add it '
                'in a drop-in to use this tracker)')
        self._marked = set()

    def _frames(self, guest, layout):
        """(present mask per page over all ranges, frame numbers)."""
        pid = guest.identity.pid
        with guest_mod.process_dir(self.kfs, guest) as proc:
            entries = pagemap.read_layout(proc, layout)
        present = (entries & pagemap.PRESENT) != 0
        pfns = entries[present] & pagemap.PFN_MASK
        if len(pfns) and not pfns.any():
            raise PermissionError(
                'pagemap shows no frame numbers for process %d: the idle '
                'page tracker needs CAP_SYS_ADMIN' % pid)
        return present, pfns

    def _runs(self, words):
        """Split sorted unique word indices into contiguous runs."""
        cut = np.flatnonzero(np.diff(words) != 1) + 1
        return np.split(words, cut)

    def _io(self, pfns, write_bits=None):
        """Read the bitmap words holding ``pfns``; with ``write_bits``
        (uint64 per word) write them."""
        words = np.unique(pfns >> np.uint64(6))
        out = np.zeros(len(words), dtype=np.uint64)
        mode = 'r+b' if write_bits is not None else 'rb'
        try:
            f = self.kfs.open(BITMAP, mode, buffering=0)
        except OSError as exc:
            raise kernfs_mod.KernelFSError(
                exc.errno, 'cannot open %s: %s'
                % (self.kfs.path(BITMAP), exc.strerror)) from None
        with f:
            pos = 0
            for run in self._runs(words):
                off = int(run[0]) * 8
                if write_bits is None:
                    buf = out[pos:pos + len(run)]
                    os.preadv(f.fileno(), [memoryview(buf).cast('B')], off)
                else:
                    buf = np.ascontiguousarray(write_bits[pos:pos + len(run)])
                    os.pwrite(f.fileno(), memoryview(buf).cast('B'), off)
                pos += len(run)
        return words, out

    def _mark_idle(self, pfns):
        if not len(pfns):
            return
        words = np.unique(pfns >> np.uint64(6))
        bits = np.zeros(len(words), dtype=np.uint64)
        idx = np.searchsorted(words, pfns >> np.uint64(6))
        np.bitwise_or.at(bits, idx,
                         np.uint64(1) << (pfns & np.uint64(63)))
        self._io(pfns, bits)

    def update(self, guests):
        for key, (guest, layout) in guests.items():
            if key not in self._marked:
                self._mark_idle(self._frames(guest, layout)[1])
                self._marked.add(key)

    def sample(self, guest, layout):
        present, pfns = self._frames(guest, layout)
        accessed = np.zeros(len(present), dtype=bool)
        if len(pfns):
            words, bits = self._io(pfns)
            idx = np.searchsorted(words, pfns >> np.uint64(6))
            idle = (bits[idx] >> (pfns & np.uint64(63))) & np.uint64(1)
            accessed[present] = idle == 0
            self._mark_idle(pfns)
        counts = pagemap.per_chunk(layout, accessed)
        return pagemap.scale(counts, layout)

    def forget(self, key):
        self._marked.discard(key)
