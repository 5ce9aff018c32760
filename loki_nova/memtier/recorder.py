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

"""Recording a process's DAMON regions (``loki-memtier record``).

The recorder runs the agent's own DAMON tracker on one process -- so it
writes to DAMON only where the tracker would: when no kdamond exists
that it did not start -- and keeps what the tracker reads, unreduced:
every snapshot's regions with their age.  The result is a
``sim.tracefile.Recording``, replayed by ``loki-memtier simulate
--trace-file``.

Which addresses are recorded: a QEMU guest's RAM (``guest-ram``: its
memfd RAM mappings, as the libvirt watcher finds them), or a plain
process's data (``data``: its writable anonymous and shared-memory
mappings -- heap, ``mmap`` ed memory, System V and POSIX shared memory,
memfds; not files, not the stack), or ranges given by address.  The data
mappings are read at the start and again at the end (programs map more
as they run); the recording names their union.
"""

import logging
import os
import platform
import tempfile
import time

import numpy as np

from loki_nova.memtier import guest as guest_mod
from loki_nova.memtier import kernfs as kernfs_mod
from loki_nova.memtier.sim import tracefile
from loki_nova.memtier.trackers import damon
from loki_nova.memtier.trackers import pagemap

LOG = logging.getLogger(__name__)

MAPPINGS = ('data', 'guest-ram')
PAGE = guest_mod.PAGE_SIZE
_PSEUDO = ('[stack', '[vvar', '[vdso', '[vsyscall', '[uprobes')
_SHARED_MEMORY = ('/dev/zero', '/SYSV', '/memfd:', '/dev/shm/',
                  '/anon_hugepage')


def data_ranges(maps):
    """(start, end) of the writable anonymous or shared-memory mappings
    among ``maps`` (``kernfs.Mapping``), merged where they touch."""
    picked = []
    for m in maps:
        if 'w' not in m.perms or m.path.startswith(_PSEUDO):
            continue
        if m.path in ('', '[heap]') or m.path.startswith(_SHARED_MEMORY):
            picked.append((m.start, m.end))
    return merge(picked)


def guest_ram_ranges(maps):
    """(start, end) of QEMU's memfd guest RAM among ``maps``."""
    from loki_nova.memtier.watcher import libvirt as libvirt_watcher
    return merge((m.start, m.end)
                 for m in libvirt_watcher.ram_mappings(maps))


def merge(ranges):
    """Sorted (start, end) pairs with overlapping or touching ones
    joined."""
    out = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def select_ranges(kfs, pid, mappings):
    maps = kfs.process_maps(pid)
    if mappings == 'data':
        return data_ranges(maps)
    if mappings == 'guest-ram':
        return guest_ram_ranges(maps)
    raise ValueError('mappings must be one of %s, got %r'
                     % (', '.join(MAPPINGS), mappings))


def present_runs(proc, ranges):
    """(start, end) runs of the pages of ``ranges`` present in RAM, from
    the pagemap of the process whose /proc/PID directory ``proc`` is."""
    runs = []
    for start, end in ranges:
        present = (pagemap.read(proc, start, (end - start) // PAGE)
                   & pagemap.PRESENT) != 0
        edges = np.flatnonzero(np.diff(np.concatenate(
            ([False], present, [False])).astype(np.int8)))
        for lo, hi in zip(edges[::2], edges[1::2]):
            runs.append((start + int(lo) * PAGE, start + int(hi) * PAGE))
    return runs


def record_snapshots(tracker, guest, intervals, interval_s, snapshots=1,
                     clock=time.monotonic, sleep=time.sleep,
                     on_interval=None, kfs=None):
    """Read ``guest``'s regions ``snapshots`` times per interval, evenly
    spaced, the last at each interval's end, for ``intervals`` intervals
    (or until the process is gone).  Returns ``[(interval, seconds,
    regions)]`` with regions rows of (start, end, nr_accesses, age).

    ``tracker`` must be monitoring ``guest`` (``DamonTracker.update``).
    The pacing is by ``clock``; a late read is not made up for, the next
    one keeps its own time.  The process's identity is checked through
    ``kfs`` (or the guest's held /proc/PID directory) every interval.
    """
    out = []
    started = clock()
    for interval in range(intervals):
        try:
            guest_mod.verify(kfs, guest)
        except guest_mod.GuestGone as exc:
            LOG.warning('recording stopped after %d interval(s): %s',
                        interval, exc)
            break
        try:
            snaps = []
            for k in range(snapshots):
                due = started + interval_s * (interval + (k + 1) / snapshots)
                wait = due - clock()
                if wait > 0:
                    sleep(wait)
                regions = tracker.regions(guest,
                                          damon.REGION_FIELDS_WITH_AGE)
                snaps.append((interval, clock() - started, regions))
        except kernfs_mod.KernelFSError as exc:
            # A kdamond stops when its target exits; the refresh then
            # fails with EINVAL.  Keep the whole intervals recorded.
            try:
                guest_mod.verify(kfs, guest)
            except guest_mod.GuestGone as gone:
                LOG.warning('recording stopped after %d interval(s): %s '
                            '(%s)', interval, gone, exc)
                break
            raise
        out.extend(snaps)
        if on_interval:
            on_interval(interval + 1, intervals)
    return out


def record(pid, intervals, interval_s, snapshots=1, mappings='data',
           ranges=None, chunk_size=2 * 1024 * 1024, kfs=None,
           damon_options=None, note=None, on_interval=None,
           clock=time.monotonic, sleep=time.sleep):
    """Record process ``pid`` and return the ``Recording``.

    ``ranges``: explicit (start, end) pairs (otherwise ``mappings``).
    ``damon_options``: sample_us, aggr_us, update_us, min_regions,
    max_regions for the tracker.  Raises ``trackers.TrackerUnavailable``
    (nothing written) when DAMON is not free for this tracker, and
    ``ProcessLookupError`` / ``guest.GuestGone`` when the process is gone.
    """
    kfs = kfs or kernfs_mod.KernelFS()
    options = dict(sample_us=5000, aggr_us=100000, update_us=1000000,
                   min_regions=10, max_regions=1000)
    options.update(damon_options or {})
    identity = guest_mod.identify(kfs, pid)
    explicit = ranges is not None
    first = merge(ranges) if explicit else select_ranges(kfs, pid, mappings)
    if not first:
        raise ValueError('process %d has no %s mappings to record'
                         % (pid, mappings))
    g = guest_mod.Guest('record-%d' % pid, identity,
                        tuple(guest_mod.RamRange(a, b) for a, b in first),
                        guest_mod.Policy('static', 0), 'process')
    g = guest_mod.attach(kfs, g)
    # A state directory of its own: the recorder never takes over the
    # agent's kdamonds (their pids are recorded in the agent's).
    with tempfile.TemporaryDirectory(prefix='loki-record-') as state:
        tracker = damon.DamonTracker(kfs, state_dir=state, **options)
        try:
            present_start = present_runs(g.proc, first)
            tracker.update({g.key: (g, None)})
            snaps = record_snapshots(tracker, g, intervals, interval_s,
                                     snapshots, clock=clock, sleep=sleep,
                                     on_interval=on_interval, kfs=kfs)
        finally:
            tracker.close()
    try:
        last = first if explicit else select_ranges(kfs, pid, mappings)
        final = merge(list(first) + list(last))
        present_end = present_runs(g.proc, final)
    except (ProcessLookupError, kernfs_mod.KernelFSError) as exc:
        LOG.warning('process %d is gone; the recording has no record of '
                    'what was present at the end (%s)', pid, exc)
        final, present_end = first, []
    finally:
        guest_mod.release(g)
    if not snaps:
        raise guest_mod.GuestGone(g.key, 'the process ended before the '
                                  'first interval was recorded')
    meta = dict(options)
    meta.update(
        interval_s=float(interval_s), snapshots_per_interval=snapshots,
        intervals_asked=intervals, chunk_size=int(chunk_size), pid=pid,
        command=_cmdline(kfs, pid), mappings=('explicit' if explicit
                                              else mappings),
        note=note or '', kernel=platform.release(),
        recorder='loki-nova %s' % _version(),
        recorded_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    return tracefile.from_snapshots(snaps, final, meta, present_start,
                                    present_end)


def _version():
    try:
        from importlib import metadata
        return metadata.version('loki-nova')
    except Exception:   # not installed: a checkout
        return 'unknown'


def _cmdline(kfs, pid):
    try:
        with open(kfs.path('proc/%d/cmdline' % pid), 'rb') as f:
            raw = f.read()
    except OSError:
        return ''
    return ' '.join(p.decode('utf-8', 'replace')
                    for p in raw.split(b'\0') if p)[:500]


def write(path, recording):
    """Save ``recording`` to ``path``, creating its directory."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tracefile.save(path, recording)
