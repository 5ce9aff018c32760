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

"""Soft-dirty tracking: which pages were *written* since the last sample.

Each sample reads the soft-dirty bit of every guest page from
/proc/PID/pagemap and then clears the bits by writing 4 to
/proc/PID/clear_refs (which write-protects the process's pages, so the
next write to each one takes a minor fault).  It sees writes only, and
costs 8 bytes of pagemap read per page per interval: the last resort when
neither DAMON nor the idle-page bitmap is offered.  Needs
CONFIG_MEM_SOFT_DIRTY, and -- for QEMU, another user's process --
CAP_DAC_OVERRIDE (clear_refs is mode 0200) and a writable /proc, which the
systemd unit grants only through the drop-in its comments give.

Both files are used through the guest's held /proc/PID directory
(``guest.process_dir``), so a pid taken over by another process is
neither read nor cleared.
"""

import ctypes
import errno
import mmap
import os

from loki_nova.memtier import guest as guest_mod
from loki_nova.memtier import kernfs as kernfs_mod
from loki_nova.memtier.trackers import pagemap
from loki_nova.memtier import trackers
from loki_nova.memtier.guest import PAGE_SIZE


class SoftDirtyTracker(trackers.Tracker):
    name = 'soft_dirty'

    def __init__(self, kfs):
        self.kfs = kfs
        reason = _probe(kfs)
        if reason:
            raise trackers.TrackerUnavailable(reason)
        self._cleared = set()

    def _clear(self, proc):
        try:
            proc.write_text('clear_refs', '4')
        except kernfs_mod.KernelFSError as exc:
            raise _explained(exc) from None

    def update(self, guests):
        for key, (guest, layout) in guests.items():
            if key not in self._cleared:
                with guest_mod.process_dir(self.kfs, guest) as proc:
                    self._clear(proc)
                self._cleared.add(key)

    def sample(self, guest, layout):
        with guest_mod.process_dir(self.kfs, guest) as proc:
            try:
                entries = pagemap.read_layout(proc, layout)
            except kernfs_mod.KernelFSError as exc:
                raise _explained(exc) from None
            counts = pagemap.per_chunk(layout,
                                       (entries & pagemap.SOFT_DIRTY) != 0)
            self._clear(proc)
        return pagemap.scale(counts, layout)

    def forget(self, key):
        self._cleared.discard(key)


#: What stops the agent from using another user's clear_refs or pagemap,
#: by errno, and what lets it.
_REMEDIES = {
    errno.EACCES: 'the soft_dirty tracker needs CAP_DAC_OVERRIDE for '
                  'another user\'s process (QEMU runs as libvirt-qemu); '
                  'the systemd unit grants it only in the drop-in its '
                  'comments give',
    errno.EROFS: '/proc is read-only for the agent (the systemd unit\'s '
                 'ReadOnlyPaths=/proc); the soft_dirty tracker needs the '
                 'drop-in the unit\'s comments give',
}


def _explained(exc):
    remedy = _REMEDIES.get(exc.errno)
    if remedy is None:
        return exc
    return kernfs_mod.KernelFSError(exc.errno, '%s: %s' % (exc.strerror,
                                                           remedy))


def _probe(kfs):
    """Why soft-dirty bits do not work here, or None when they do: clear
    our own bits, write a page of our own and look for its bit."""
    buf = mmap.mmap(-1, PAGE_SIZE)
    try:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        buf[0:1] = b'x'
        try:
            with kfs.process_dir(os.getpid()) as proc:
                proc.write_text('clear_refs', '4')
                before = pagemap.read(proc, addr, 1)[0]
                buf[0:1] = b'y'
                after = pagemap.read(proc, addr, 1)[0]
        except OSError as exc:
            return 'cannot use clear_refs/pagemap: %s' % _explained(exc)
        if (before & pagemap.SOFT_DIRTY) or not (after & pagemap.SOFT_DIRTY):
            return ('the kernel does not keep soft-dirty bits (a page '
                    'written after clear_refs showed none; needs '
                    'CONFIG_MEM_SOFT_DIRTY)')
        return None
    finally:
        buf.close()
