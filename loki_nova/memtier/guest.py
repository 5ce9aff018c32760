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

"""What the agent manages: a guest is a process and the exact virtual
address ranges of its RAM, plus the tiering policy it was given.

Identity is pid + process start time (+ the libvirt domain uuid for QEMU
guests, checked against ``-uuid`` on QEMU's command line).  A pid alone can
be recycled by an unrelated process.  The agent ``attach`` es every guest it
manages: it holds the process's /proc/PID directory open, checked once
against the identity, and reads stat, cmdline and pagemap and writes
clear_refs through it, so none of them can reach a process that took the
pid over.  ``verify`` runs before and after every ``move_pages`` call
(which can only name a pid), and a guest whose identity no longer holds is
dropped without anything more being moved.
"""

import contextlib
import dataclasses

import numpy as np

POLICIES = ('static', 'on_demand')
PAGE_SIZE = 4096


class GuestGone(Exception):
    """The guest's process exited or its pid now names another process."""

    def __init__(self, key, reason):
        super().__init__('guest %s is gone: %s' % (key, reason))
        self.key = key
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Identity:
    pid: int
    #: Clock ticks since boot, /proc/PID/stat field 22.
    start_time: int
    #: libvirt domain uuid for QEMU guests (on QEMU's ``-uuid``).
    uuid: str = None

    def describe(self):
        text = 'pid %d started at tick %d' % (self.pid, self.start_time)
        if self.uuid:
            text += ', domain %s' % self.uuid
        return text


@dataclasses.dataclass(frozen=True)
class RamRange:
    """A page-aligned virtual address range [start, end) of guest RAM."""

    start: int
    end: int

    def __post_init__(self):
        if self.start % PAGE_SIZE or self.end % PAGE_SIZE \
                or self.end <= self.start or self.start < 0:
            raise ValueError('RAM range %#x-%#x must be non-empty and '
                             'page aligned' % (self.start, self.end))

    @property
    def size(self):
        return self.end - self.start


@dataclasses.dataclass(frozen=True)
class Policy:
    """A guest's DRAM policy: ``static`` guests get ``floor_mb``;
    ``on_demand`` guests get at least ``floor_mb`` and up to
    ``ceiling_mb`` when DRAM is free."""

    policy: str
    floor_mb: int
    ceiling_mb: int = None

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError('policy must be one of %s, got %r'
                             % (', '.join(POLICIES), self.policy))
        if not isinstance(self.floor_mb, int) or self.floor_mb < 0:
            raise ValueError('floor_mb must be an integer >= 0, got %r'
                             % (self.floor_mb,))
        ceiling = self.ceiling_mb
        if self.policy == 'static':
            if ceiling not in (None, self.floor_mb):
                raise ValueError('a static policy has no ceiling (got '
                                 'ceiling_mb=%r)' % (ceiling,))
            object.__setattr__(self, 'ceiling_mb', self.floor_mb)
        elif ceiling is None:
            raise ValueError('an on_demand policy needs ceiling_mb')
        elif not isinstance(ceiling, int) or ceiling < self.floor_mb:
            raise ValueError('ceiling_mb must be an integer >= floor_mb '
                             '(%d), got %r' % (self.floor_mb, ceiling))


@dataclasses.dataclass(frozen=True)
class Guest:
    """One managed guest as a watcher sees it."""

    #: Instance uuid (libvirt) or registration name (process watcher).
    key: str
    identity: Identity
    ranges: tuple
    policy: Policy
    #: Which watcher found it: 'libvirt' or 'process'.
    source: str
    #: The process's /proc/PID directory held open (``kernfs.ProcessDir``)
    #: once the agent manages the guest (``attach``); None before.
    proc: object = dataclasses.field(default=None, compare=False,
                                     repr=False)

    @property
    def ram_bytes(self):
        return sum(r.size for r in self.ranges)


def _check(proc, guest):
    """Raise ``GuestGone`` unless the process of ``proc`` is ``guest``'s:
    alive, the same start time, and for QEMU guests the same domain uuid
    on its command line."""
    ident = guest.identity
    try:
        state, start = proc.stat()
        if state in ('Z', 'X'):
            raise ProcessLookupError
        if start != ident.start_time:
            raise GuestGone(guest.key, 'pid %d was recycled (started at '
                            'tick %d, expected %d)' % (
                                ident.pid, start, ident.start_time))
        if ident.uuid and not _has_uuid(proc.cmdline(), ident.uuid):
            raise GuestGone(guest.key, 'process %d is not domain %s'
                            % (ident.pid, ident.uuid))
    except ProcessLookupError:
        raise GuestGone(guest.key, 'process %d exited' % ident.pid) \
            from None


def verify(kfs, guest):
    """Raise ``GuestGone`` unless ``guest``'s process still is the one the
    watcher found: same pid, same start time, and for QEMU guests the same
    domain uuid on its command line.  An attached guest is checked
    through its held /proc/PID directory."""
    with process_dir(kfs, guest):
        pass


@contextlib.contextmanager
def process_dir(kfs, guest):
    """The /proc/PID directory of ``guest``'s process, checked to be the
    guest's: the held one of an attached guest (re-checked), or for a
    guest not attached one opened for this use and closed after it.
    Raises ``GuestGone``."""
    if guest.proc is not None:
        _check(guest.proc, guest)
        yield guest.proc
        return
    try:
        proc = kfs.process_dir(guest.identity.pid)
    except ProcessLookupError:
        raise GuestGone(guest.key, 'process %d exited'
                        % guest.identity.pid) from None
    with proc:
        _check(proc, guest)
        yield proc


def attach(kfs, guest):
    """``guest`` holding its process's /proc/PID directory open, checked
    against its identity: from then on nothing read or written through it
    can reach another process.  Raises ``GuestGone``.  ``release`` closes
    the directory."""
    if guest.proc is not None:
        _check(guest.proc, guest)
        return guest
    try:
        proc = kfs.process_dir(guest.identity.pid)
    except ProcessLookupError:
        raise GuestGone(guest.key, 'process %d exited'
                        % guest.identity.pid) from None
    try:
        _check(proc, guest)
    except BaseException:
        proc.close()
        raise
    return dataclasses.replace(guest, proc=proc)


def release(guest):
    """Close the /proc/PID directory ``attach`` opened, if any."""
    if guest.proc is not None:
        guest.proc.close()


def _has_uuid(argv, uuid):
    for flag, value in zip(argv, argv[1:]):
        if flag == '-uuid' and value.lower() == uuid.lower():
            return True
    return False


def identify(kfs, pid, uuid=None):
    """The ``Identity`` of a live process ``pid``."""
    return Identity(pid, kfs.process_start_time(pid), uuid)


class ChunkLayout:
    """Guest RAM cut into chunks: chunk i covers bytes
    [starts[i], starts[i] + sizes[i]) of the guest's address space.
    Ranges are taken in address order and must not overlap.  Each range is
    cut separately, so a chunk never spans two ranges; the last chunk of a
    range may be short."""

    def __init__(self, ranges, chunk_size):
        if chunk_size % PAGE_SIZE or chunk_size <= 0:
            raise ValueError('chunk_size must be a positive multiple of '
                             '%d, got %r' % (PAGE_SIZE, chunk_size))
        ranges = sorted(ranges, key=lambda r: r.start)
        for a, b in zip(ranges, ranges[1:]):
            if b.start < a.end:
                raise ValueError('RAM ranges %#x-%#x and %#x-%#x overlap'
                                 % (a.start, a.end, b.start, b.end))
        starts, sizes = [], []
        for r in ranges:
            s = np.arange(r.start, r.end, chunk_size, dtype=np.uint64)
            starts.append(s)
            sizes.append(np.minimum(np.uint64(r.end) - s,
                                    np.uint64(chunk_size)))
        self.chunk_size = chunk_size
        self.ranges = tuple(ranges)
        self.starts = (np.concatenate(starts) if starts
                       else np.zeros(0, np.uint64))
        self.sizes = (np.concatenate(sizes) if sizes
                      else np.zeros(0, np.uint64))

    def __len__(self):
        return len(self.starts)

    def pages(self, chunks):
        """Page addresses (uint64) of the given chunk indices, in order."""
        chunks = self._check(chunks)
        if not len(chunks):
            return np.zeros(0, np.uint64)
        starts = self.starts[chunks]
        counts = (self.sizes[chunks] // PAGE_SIZE).astype(np.int64)
        first = np.repeat(starts, counts)
        offs = np.arange(counts.sum(), dtype=np.uint64) - np.repeat(
            np.cumsum(counts) - counts, counts).astype(np.uint64)
        return first + offs * np.uint64(PAGE_SIZE)

    def probes(self, per_chunk, chunks=None, shift=0):
        """``per_chunk`` evenly spaced page addresses in every chunk (or in
        ``chunks``; fewer in chunks with fewer pages), and the chunk of
        each.  ``shift`` pages moves every probe forward (wrapping within
        its chunk), so that successive calls with different shifts probe
        different pages."""
        chunks = (np.arange(len(self)) if chunks is None
                  else self._check(chunks))
        npages = (self.sizes[chunks] // PAGE_SIZE).astype(np.int64)
        k = np.minimum(npages, per_chunk)
        pos = np.repeat(np.arange(len(chunks)), k)
        j = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
        step = npages[pos] // k[pos]
        page = (j * step + int(shift)) % npages[pos]
        owner = chunks[pos]
        addr = self.starts[owner] + page.astype(np.uint64) \
            * np.uint64(PAGE_SIZE)
        return addr, owner

    def _check(self, chunks):
        chunks = np.asarray(chunks, dtype=np.int64)
        if len(chunks) and (chunks.min() < 0 or chunks.max() >= len(self)):
            raise IndexError('chunk index out of range 0-%d' % (len(self) - 1))
        return chunks

    def chunk_of(self, addresses):
        """Chunk index of each address (-1 when outside guest RAM)."""
        addresses = np.asarray(addresses, dtype=np.uint64)
        if not len(self):
            return np.full(addresses.shape, -1, dtype=np.int64)
        idx = np.searchsorted(self.starts, addresses, side='right') - 1
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        ok &= addresses < self.starts[safe] + self.sizes[safe]
        return np.where(ok, idx, -1)
