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

"""Moving a process's pages between NUMA nodes with move_pages(2).

``Mover.move`` sends page addresses to one node in batches, paced so that
the bytes sent never run ahead of the rate cap (one token bucket shared by
every guest of the agent).  move_pages(2) can only name a pid, so the
caller's identity check runs right before and right after every call: a
call made while the process was still the guest's (checked after it,
through the guest's held /proc/PID directory) acted on the guest, since a
pid is not given to another process while its holder exists.  A guest
whose process exited or whose pid was recycled stops the move at once
(``verify`` raises), and no further call names its pid.

Per-page status is read the way the kernel means it:

* ``>= 0`` is the node the page is on *now*.  Equal to the target: done.
* ``-ENOENT`` (never touched, nothing to move) and ``-EFAULT`` (not
  mapped, or the shared zero page) are skipped: nothing to move.
* ``-EACCES`` per page: mapped by several processes; MPOL_MF_MOVE leaves
  such pages alone on purpose, so they are counted as ``shared`` and left.
* Anything else negative (``-EBUSY``, ``-EAGAIN``, ``-ENOMEM``, ...) is
  not final: a move can report ``-EBUSY`` for a page it did move.  Such
  pages are re-queried, and those not on the target are retried, up to
  ``retries`` times; what is still elsewhere after that is ``failed``.

Call-level errors are raised as clear exceptions: the target node is not
allowed by the process's cpuset (``EACCES``), the node does not exist or
has no memory (``ENODEV``), the process is gone (``ESRCH``).
"""

import ctypes
import dataclasses
import errno
import logging
import os
import platform
import threading
import time

import numpy as np

from loki_nova.memtier import kernfs

LOG = logging.getLogger(__name__)

PAGE_SIZE = os.sysconf('SC_PAGE_SIZE')
MPOL_MF_MOVE = 1 << 1
#: Task flag set when a task starts to exit (include/linux/sched.h).
PF_EXITING = 0x4
_SYSCALL_MOVE_PAGES = {'x86_64': 279, 'aarch64': 239}
_SKIP = (-errno.ENOENT, -errno.EFAULT)
#: A status slot the kernel did not write.
UNKNOWN = np.iinfo(np.int32).min


class MoveError(Exception):
    """move_pages refused the whole request; the message says why."""


class NodeNotAllowed(MoveError):
    """The target node is outside the process's cpuset (EACCES)."""


class NoSuchNode(MoveError):
    """The target node does not exist or has no memory (ENODEV)."""


_libc = None


def _move_pages_call():
    global _libc
    if _libc is None:
        nr = _SYSCALL_MOVE_PAGES.get(platform.machine())
        if nr is None:
            raise MoveError('move_pages(2): unsupported machine %r'
                            % platform.machine())
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syscall
        fn.restype = ctypes.c_long
        fn.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_ulong,
                       ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_int]
        _libc = (fn, nr)
    return _libc


def move_pages(pid, pages, node=None, status=None):
    """One raw move_pages(2) call: move ``pages`` (uint64 addresses) of
    ``pid`` to ``node``, or only query where they are when ``node`` is
    None.  Returns the int32 status array.  Raises ``ProcessLookupError``,
    ``PermissionError``, ``NodeNotAllowed``, ``NoSuchNode`` or
    ``MoveError``."""
    fn, nr = _move_pages_call()
    pages = np.ascontiguousarray(pages, dtype=np.uint64)
    n = len(pages)
    if status is None:
        status = np.empty(n, dtype=np.int32)
    # Slots the kernel leaves unwritten (it stops early and returns how
    # many pages it did not migrate) must not read as a node.
    status.fill(UNKNOWN)
    if n == 0:
        return status
    if node is None:
        nodes_ptr, flags = None, 0
    else:
        nodes = np.full(n, node, dtype=np.int32)
        nodes_ptr, flags = nodes.ctypes.data, MPOL_MF_MOVE
    rc = fn(nr, pid, n, pages.ctypes.data, nodes_ptr, status.ctypes.data,
            flags)
    if rc < 0:
        err = ctypes.get_errno()
        if err == errno.ESRCH:
            raise ProcessLookupError(err, 'no process %d' % pid)
        if err == errno.EACCES:
            raise NodeNotAllowed(
                'node %s is not allowed by the cpuset of process %d; allow '
                'it in the cpuset (cpuset.mems) or do not manage this '
                'process' % (node, pid))
        if err == errno.ENODEV:
            raise NoSuchNode('node %s does not exist or has no memory'
                             % (node,))
        if err == errno.EINVAL and _exiting(pid):
            raise ProcessLookupError(errno.ESRCH, 'process %d is exiting'
                                     % pid)
        if err == errno.EPERM:
            raise PermissionError(
                err, 'not permitted to move pages of process %d (another '
                'user\'s process needs CAP_SYS_PTRACE)' % pid)
        raise MoveError('move_pages(pid=%d, %d pages, node=%s) failed: %s'
                        % (pid, n, node, os.strerror(err)))
    # rc > 0: that many pages were not migrated; their slots say where
    # they are, or are UNKNOWN, and the caller re-queries them.
    return status


def _exiting(pid):
    """An exiting process has no memory left: move_pages says EINVAL.
    The kernel marks a task PF_EXITING (its flags, field 9 of
    /proc/PID/stat) before it lets go of the memory, and the task keeps
    a live state letter until it becomes a zombie, so the flag is what
    tells a process on its way out; a zombie or a reaped pid is past it.
    (move_pages itself acts on the real kernel, so this reads the real
    /proc too.)"""
    try:
        text = kernfs.KernelFS().read_text('proc/%d/stat' % pid)
    except kernfs.KernelFSError as exc:
        return exc.errno in (errno.ENOENT, errno.ESRCH)
    # The command name (field 2) may hold spaces and parentheses.
    fields = text[text.rindex(')') + 2:].split()
    return fields[0] in ('Z', 'X') or bool(int(fields[6]) & PF_EXITING)


@dataclasses.dataclass
class MoveResult:
    """Pages of one ``Mover.move`` call, by outcome."""

    requested: int = 0
    #: On the target node at the end (moved, or there already).
    placed: int = 0
    #: Not present or not mapped: nothing to move.
    absent: int = 0
    #: Mapped by other processes too, left alone.
    shared: int = 0
    #: Still elsewhere after the retries.
    failed: int = 0
    #: Re-queries/retries done for pages with a non-final status.
    retries: int = 0
    seconds: float = 0.0

    def add(self, other):
        for f in dataclasses.fields(self):
            setattr(self, f.name,
                    getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def bytes_placed(self):
        return self.placed * PAGE_SIZE


class RateLimiter:
    """Paces bytes to ``bytes_per_s``: ``acquire(n)`` waits
    (interruptibly, on ``stop``) until ``n`` more bytes may be sent.

    Each send is scheduled ``n / rate`` after the previous one.  When a
    send took longer than its slot (a slow batch) the schedule is kept, so
    the next sends go at once and the average holds; when the schedule is
    more than ``catch_up_s`` behind, the sender was idle (between
    intervals) and the schedule restarts now, so idleness never becomes a
    burst.  A rate of 0 sends nothing.

    ``meanwhile``, if given, is called every ``meanwhile_every_s`` while
    sends go on, during waits and between sends that go at once (the
    agent empties DAMON's trace buffer there, which a long move would
    otherwise let overflow); its exceptions are the caller's to avoid."""

    def __init__(self, bytes_per_s, catch_up_s=1.0, clock=time.monotonic,
                 stop=None, meanwhile=None, meanwhile_every_s=None):
        if bytes_per_s < 0:
            raise ValueError('bytes_per_s must be >= 0, got %r'
                             % (bytes_per_s,))
        if meanwhile is not None and not (meanwhile_every_s or 0) > 0:
            raise ValueError('meanwhile_every_s must be > 0 with a '
                             'meanwhile callable, got %r'
                             % (meanwhile_every_s,))
        self.rate = float(bytes_per_s)
        self.catch_up_s = catch_up_s
        self.clock = clock
        self.stop = stop or threading.Event()
        self.meanwhile = meanwhile
        self.meanwhile_every_s = meanwhile_every_s
        self._meanwhile_due = None
        self._next = None

    def acquire(self, nbytes):
        """Returns False when stopped (nothing may be sent)."""
        if self.rate <= 0:
            return False
        self._meanwhile_if_due()
        now = self.clock()
        if self._next is None or self._next < now - self.catch_up_s:
            self._next = now
        start = self._next
        self._next = start + nbytes / self.rate
        if start > now and not self._wait_until(start):
            return False
        return not self.stop.is_set()

    def _meanwhile_if_due(self):
        """Call ``meanwhile`` if ``meanwhile_every_s`` have passed since
        the last call (or the first ``acquire``): between batches that go
        at once (a move slower than the cap) as well as during waits."""
        if self.meanwhile is None:
            return
        now = self.clock()
        if self._meanwhile_due is None:
            self._meanwhile_due = now + self.meanwhile_every_s
        elif now >= self._meanwhile_due:
            self.meanwhile()
            self._meanwhile_due = self.clock() + self.meanwhile_every_s

    def _wait_until(self, deadline):
        """False if stopped before ``deadline``."""
        while True:
            now = self.clock()
            if now >= deadline:
                return True
            until = deadline
            if self.meanwhile is not None:
                until = min(deadline, self._meanwhile_due)
            if until > now and self.stop.wait(until - now):
                return False
            self._meanwhile_if_due()


class Mover:
    """Paced, verified page moves for one agent."""

    def __init__(self, limiter, batch_pages=4096, retries=3,
                 query_only=False):
        """``query_only`` makes ``move`` ask where the pages are instead of
        moving them (same calls, pacing and checks; nothing changes):
        for measuring the agent on a host whose pages must not move."""
        if batch_pages < 1:
            raise ValueError('batch_pages must be >= 1, got %r'
                             % (batch_pages,))
        self.limiter = limiter
        self.batch_pages = batch_pages
        self.retries = retries
        self.query_only = query_only
        self._warned_shared = set()

    def _batch(self):
        # Keep each batch to ~1/10 s of the cap so pacing stays smooth.
        by_rate = int(self.limiter.rate * 0.1) // PAGE_SIZE
        return max(16, min(self.batch_pages, by_rate or 16))

    def query(self, pid, pages, verify=None):
        """Where ``pages`` of ``pid`` are: node id, or -errno per page.
        ``verify()``, if given, runs before and after the call."""
        if verify is not None:
            verify()
        status = move_pages(pid, pages)
        if verify is not None:
            verify()
        return status

    def move(self, pid, pages, node, verify=None):
        """Move ``pages`` of ``pid`` to ``node``, at most at the rate cap.
        ``verify()`` runs before and after every move_pages call and
        raises to stop (e.g. ``guest.GuestGone``).  Returns a
        ``MoveResult``; stops early (with the rest uncounted) when the
        limiter is stopped."""
        pages = np.ascontiguousarray(pages, dtype=np.uint64)
        result = MoveResult()
        t0 = time.monotonic()
        step = self._batch()
        for lo in range(0, len(pages), step):
            chunk = pages[lo:lo + step]
            if not self.limiter.acquire(len(chunk) * PAGE_SIZE):
                break
            result.add(self._move_batch(pid, chunk, node, verify))
        result.seconds = time.monotonic() - t0
        return result

    def _move_batch(self, pid, pages, node, verify=None):
        res = MoveResult(requested=len(pages))

        def call(*args):
            if verify is not None:
                verify()
            status = move_pages(pid, *args)
            if verify is not None:
                # Still the guest's process after the call: the call
                # acted on it.  If not, stop here; the caller drops it.
                verify()
            return status

        if self.query_only:
            status = call(pages)
            res.placed = int((status == node).sum())
            res.absent = int(((status == -errno.ENOENT)
                              | (status == -errno.EFAULT)).sum())
            return res
        status = call(pages, node)
        pending = np.ones(len(pages), dtype=bool)
        for attempt in range(self.retries + 1):
            done = pending & (status == node)
            skip = pending & ((status == -errno.ENOENT)
                              | (status == -errno.EFAULT))
            shared = pending & (status == -errno.EACCES)
            res.placed += int(done.sum())
            res.absent += int(skip.sum())
            res.shared += int(shared.sum())
            pending &= ~(done | skip | shared)
            if not pending.any() or attempt == self.retries:
                break
            # Not final: look where the pages are now, retry the rest.
            res.retries += 1
            idx = np.flatnonzero(pending)
            status[idx] = call(pages[idx])
            elsewhere = idx[status[idx] != node]
            elsewhere = elsewhere[~np.isin(status[elsewhere], _SKIP)
                                  & (status[elsewhere] != -errno.EACCES)]
            if len(elsewhere):
                status[elsewhere] = call(pages[elsewhere], node)
        res.failed = int(pending.sum())
        if res.failed:
            LOG.debug('process %d: %d of %d pages not moved to node %d after '
                      '%d retries (status %s)', pid, res.failed, len(pages),
                      node, self.retries,
                      sorted(set(status[pending].tolist()))[:5])
        if res.shared and pid not in self._warned_shared:
            self._warned_shared.add(pid)
            LOG.warning('process %d: %d pages are mapped by other processes '
                        'too and were left where they are', pid, res.shared)
        return res
