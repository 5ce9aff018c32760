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

"""Every DAMON aggregation of the agent's kdamonds, through tracefs.

At the end of each aggregation interval a kdamond emits the trace event
``damon:damon_aggregated`` once per region (target, number of regions,
start, end, ``nr_accesses``, age), whether or not anyone asked.  This
stream collects those events in a tracing instance of its own
(``/sys/kernel/tracing/instances/<name>``: its own ring buffer, its own
event switches and options, so the machine's other tracing is not
touched), sorts them by the pid of the kdamond that emitted them, and
hands each watched kdamond's regions out per read: its whole
aggregations since the previous read.  The event is switched on when
the stream is made and off when it is closed, both while no kdamond
runs (``DamonTracker``): switching it patches the kernel's code.
Unlike asking a kdamond for its ``tried_regions`` (one aggregation
interval, a read that waits for the next one and takes the kernel's
DAMON lock, so guests' reads queue behind each other), a read here costs
no wait and covers the whole time since the last one.

Events are read from the instance's ``trace_pipe`` without blocking, at
each ``take`` and whenever ``drain`` is called (the agent does so between
samples); the ring buffer (``buffer_kb`` for each of the machine's
possible CPUs: the kernel allocates it for every one) holds what arrives
between two reads,
and when it overflows the oldest events are lost -- the reads then cover
the most recent part of the interval, and ``lost()`` counts the events.
A new instance starts with the machine's global trace options; the ones
that change the text of an event or what an overflow drops are set to
what this module reads.

A kdamond emits an aggregation's regions one after the other in address
order, so an aggregation ends where the next start address is not
higher.  Only whole aggregations are handed out (as many events as their
``nr_regions`` say); one still arriving waits for the next read, and
pieces of one (the start of watching, events lost) are dropped.
"""

import errno
import logging
import os
import re
import select
import time

import numpy as np

from loki_nova.memtier import kernfs

LOG = logging.getLogger(__name__)

#: Where tracefs is mounted, tried in order (relative to the KernelFS root).
TRACEFS = kernfs.TRACEFS_DIRS
EVENT = 'events/damon/damon_aggregated'
DEFAULT_INSTANCE = 'loki-memtier-damon'
#: One line of the event in ``trace_pipe``: the task's pid (after the
#: last '-' of "comm-pid", before the CPU), then the event's fields.
_LINE = re.compile(
    rb'-(\d+) +\[\d+\][^\n]*?damon_aggregated: target_id=\d+ '
    rb'nr_regions=(\d+) (\d+)-(\d+): (\d+) \d+')
#: Trace options (``options/NAME``) the instance sets, since it inherits
#: the machine's: the line format ``_LINE`` reads, and an overflow that
#: overwrites the oldest events.  Options a kernel lacks are skipped.
OPTIONS = (('overwrite', 1), ('context-info', 1), ('record-tgid', 0),
           ('latency-format', 0), ('raw', 0), ('hex', 0), ('bin', 0),
           ('fields', 0), ('print-parent', 0), ('stacktrace', 0),
           ('userstacktrace', 0), ('block', 0))
#: The event's print format that ``_LINE`` reads (its ``format`` file).
PRINT_FMT = 'print fmt: "target_id=%lu nr_regions=%u %lu-%lu: %u %u"'
#: check_lost() reads every CPU's statistics at most this often.
LOST_CHECK_S = 1.0
#: Events held for one kdamond between two takes, at most (32 bytes
#: each); beyond, the oldest are dropped (a guest whose samples stopped).
MAX_HELD_ROWS = 1 << 20


class TraceUnavailable(Exception):
    """The kernel or its tracefs cannot give DAMON's trace events."""


def find_tracefs(kfs):
    """The KernelFS-relative tracefs directory that has DAMON's
    ``damon_aggregated`` event, or TraceUnavailable saying why not."""
    for rel in TRACEFS:
        if os.path.isdir(kfs.path(rel)) and \
                not os.access(kfs.path(rel), os.R_OK | os.X_OK):
            raise TraceUnavailable('%s is not readable by this user (it '
                                   'needs root)' % kfs.path(rel))
        if kfs.exists(rel + '/instances'):
            if not kfs.exists(rel + '/' + EVENT):
                raise TraceUnavailable(
                    '%s has no %s event (the kernel is built without '
                    'DAMON\'s trace events)' % (kfs.path(rel), EVENT))
            try:
                fmt = kfs.read_text(rel + '/' + EVENT + '/format')
            except OSError as exc:
                raise TraceUnavailable('cannot read the format of %s: %s'
                                       % (EVENT, exc)) from None
            if PRINT_FMT not in fmt:
                raise TraceUnavailable(
                    '%s prints its events in a format this agent does not '
                    'read (it reads \'%s\')' % (EVENT, PRINT_FMT))
            return rel
    raise TraceUnavailable(
        'tracefs is not mounted (looked for %s; mount it with "mount -t '
        'tracefs tracefs /sys/kernel/tracing")'
        % ', '.join(kfs.path(r) for r in TRACEFS))


def parse(text, pids):
    """Events in ``text`` (whole lines of ``trace_pipe``) of the kdamonds
    ``pids``, in the order they came: {pid: uint64 rows of nr_regions,
    start, end, nr_accesses}."""
    rows = {}
    for m in _LINE.finditer(text):
        pid = int(m.group(1))
        if pid in pids:
            rows.setdefault(pid, []).append(m.groups()[1:])
    return {pid: np.array(found, dtype=np.uint64)
            for pid, found in rows.items()}


def whole_aggregations(rows):
    """Split one kdamond's events (``parse`` rows, in order) into
    ``(regions, count, rest)``: the start, end, nr_accesses rows of its
    whole aggregations, how many, and the rows of one still arriving (to
    be read again with what follows).  An aggregation is whole when it has
    as many events as its ``nr_regions``, all with that ``nr_regions``
    and regions that follow each other without overlap; pieces (and two
    pieces joined where events were lost) before the last are dropped."""
    if not len(rows):
        return np.zeros((0, 3), dtype=np.uint64), 0, rows
    counts, starts, ends = rows[:, 0], rows[:, 1], rows[:, 2]
    new = np.ones(len(rows), dtype=bool)
    new[1:] = starts[1:] <= starts[:-1]
    first = np.flatnonzero(new)
    sizes = np.diff(np.append(first, len(rows)))
    odd = np.zeros(len(rows), dtype=np.int64)
    odd[1:] = (counts[1:] != counts[:-1]) | (ends[:-1] > starts[1:])
    odd[first] = 0
    whole = (sizes == counts[first]) & (np.add.reduceat(odd, first) == 0)
    if whole[-1]:
        upto, rest = len(first), rows[:0]
    else:
        upto, rest = len(first) - 1, rows[first[-1]:]
    keep = np.repeat(whole[:upto], sizes[:upto])
    taken = rows[:first[upto] if upto < len(first) else len(rows)]
    return taken[keep][:, 1:4], int(np.count_nonzero(whole[:upto])), rest


class Accumulated:
    """What one kdamond reported since the last read, in order."""

    def __init__(self, rows=None):
        self.parts = [] if rows is None or not len(rows) else [rows]

    def add(self, rows):
        self.parts.append(rows)
        if sum(len(p) for p in self.parts) > MAX_HELD_ROWS:
            self.parts = [self.rows()[-MAX_HELD_ROWS:]]

    def rows(self):
        if not self.parts:
            return np.zeros((0, 4), dtype=np.uint64)
        if len(self.parts) > 1:
            self.parts = [np.concatenate(self.parts)]
        return self.parts[0]

    def aggregations(self):
        return whole_aggregations(self.rows())[1]


class TraceStream:
    """DAMON's aggregations for a set of kdamond pids (see the module
    docstring).  ``kfs`` must be able to write (the agent's, as root)."""

    def __init__(self, kfs, name=DEFAULT_INSTANCE, buffer_kb=1024):
        if buffer_kb < 4:
            raise ValueError('the trace buffer must be at least 4 KiB per '
                             'CPU, got %r' % (buffer_kb,))
        self.kfs = kfs
        self.tracefs = find_tracefs(kfs)
        self.rel = '%s/instances/%s' % (self.tracefs, name)
        self.dir = kfs.path(self.rel)
        self.name = name
        if os.path.isdir(self.dir):
            # Left by an agent that did not stop cleanly: the name is this
            # agent's, and an instance holds nothing but its buffer.
            LOG.info('DAMON trace: removing the tracing instance %s left '
                     'from before', self.dir)
            self._remove()
        try:
            self._make_instance()
        except OSError as exc:
            raise TraceUnavailable('cannot create the tracing instance %s: '
                                   '%s' % (self.dir, exc)) from None
        self._fd = None
        self._poll = None
        self._pids = frozenset()
        self._held = {}
        self._tail = b''
        self._lost = 0
        self._lost_checked = None
        try:
            for option, value in OPTIONS:
                if os.path.exists(os.path.join(self.dir, 'options', option)):
                    self._write('options/' + option, value)
            self._write('buffer_size_kb', buffer_kb)
            # On for the stream's life: switching a trace event patches
            # the kernel's code -- where it fires, and (through the
            # record-cmd option an instance inherits) the scheduler's
            # tracepoints.  So it happens when the tracker starts, before
            # any kdamond, and when it stops, not at each change of the
            # guests (under QEMU's multi-threaded TCG, code patched while
            # another vCPU ran it panicked the sandbox's kernel once).
            self._write(EVENT + '/enable', 1)
            self._fd = os.open(os.path.join(self.dir, 'trace_pipe'),
                               os.O_RDONLY | os.O_NONBLOCK)
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
        except OSError as exc:
            self.close()
            raise TraceUnavailable('cannot set up the tracing instance %s: '
                                   '%s' % (self.dir, exc)) from None
        except Exception:
            self.close()
            raise

    def _make_instance(self):
        # tracefs fills the new directory with the instance's files.
        self.kfs.mkdir(self.rel)

    def _write(self, rel, value):
        self.kfs.write_text('%s/%s' % (self.rel, rel), '%s\n' % value)

    def watch(self, pids):
        """Hand out the events of these kdamond pids only, from now on;
        what was held for others is dropped.  The pids are told apart
        here, not by the kernel: its pid list (``set_event_pid``) would be
        rewritten, and its scheduler hooks switched, at each change of the
        guests, and an event filter is refused from 4 KiB (about 170
        kdamonds).  Other kdamonds (a DAMON module switched on after the
        tracker started) share the buffer; their events are dropped
        here."""
        pids = frozenset(int(p) for p in pids)
        self.drain()
        self._pids = pids
        self._held = {p: Accumulated() for p in pids}

    def drain(self):
        """Read everything the ring buffer holds, into each kdamond's
        share."""
        chunks = []
        while True:
            try:
                data = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not data:
                break
            chunks.append(data)
        if not chunks:
            return
        text = self._tail + b''.join(chunks)
        cut = text.rfind(b'\n') + 1
        self._tail = text[cut:]
        for pid, rows in parse(text[:cut], self._pids).items():
            self._held[pid].add(rows)

    def pending(self, pid):
        """Whole aggregation intervals of ``pid`` read and not yet
        taken."""
        self.drain()
        return self._held[pid].aggregations()

    def take(self, pid, wait_s=0.0):
        """(regions, aggregations) the kdamond ``pid`` reported since the
        last ``take`` of it: uint64 rows of start, end, nr_accesses of its
        whole aggregation intervals, and how many.  When there is none
        yet, waits up to ``wait_s`` seconds for one; it may still be 0."""
        if pid not in self._pids:
            raise KeyError('kdamond %s is not watched' % pid)
        self.drain()
        deadline = time.monotonic() + wait_s
        while self._held[pid].aggregations() < 1:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._poll.poll(min(left, 0.05) * 1000)
            self.drain()
        regions, count, rest = whole_aggregations(self._held[pid].rows())
        self._held[pid] = Accumulated(rest)
        return regions, count

    def lost(self):
        """Events the ring buffer lost before they were read (overwritten,
        or dropped if it does not overwrite), over all CPUs, since the
        instance was made."""
        total = 0
        base = os.path.join(self.dir, 'per_cpu')
        for cpu in os.listdir(base) if os.path.isdir(base) else ():
            try:
                with open(os.path.join(base, cpu, 'stats')) as f:
                    for line in f:
                        if line.startswith(('overrun:', 'dropped events:')):
                            total += int(line.split(':')[1])
            except (OSError, ValueError):
                continue
        return total

    def check_lost(self):
        """Log when events were lost since the last check (at most once a
        ``LOST_CHECK_S``); their number."""
        now = time.monotonic()
        if self._lost_checked is not None and \
                now - self._lost_checked < LOST_CHECK_S:
            return 0
        self._lost_checked = now
        lost = self.lost()
        new, self._lost = lost - self._lost, lost
        if new > 0:
            LOG.warning('DAMON trace: %d events were overwritten before the '
                        'agent read them (the tracing buffer of %s is too '
                        'small for the guests\' regions between two reads: '
                        'raise [memtier] damon_trace_buffer_kb or '
                        'damon_aggr_us); samples cover the rest of the '
                        'interval', new, self.dir)
        return max(new, 0)

    def _remove(self):
        for attempt in range(50):
            try:
                self.kfs.rmdir(self.rel)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                # EBUSY while a reader still has the pipe open.
                if exc.errno != errno.EBUSY or attempt == 49:
                    LOG.warning('DAMON trace: could not remove the tracing '
                                'instance %s: %s', self.dir, exc)
                    return
                time.sleep(0.02)

    def close(self):
        self._poll = None
        if self._fd is not None:
            try:
                self._write(EVENT + '/enable', 0)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        self._pids, self._held = frozenset(), {}
        self._remove()
