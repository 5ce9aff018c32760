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

"""Recorded DAMON traces: the file format and their replay.

``loki-memtier record`` writes what DAMON reported for one process, raw:
every *snapshot* is the list of DAMON regions (start, end, nr_accesses,
age) of one aggregation interval, read at the end of each recording
interval (``snapshots`` per interval, evenly spaced, the last at the
interval's end).  With it go the DAMON attributes, the address ranges
recorded (the process's data mappings or a guest's RAM), which of their
pages were present at the start and at the end, the interval length and
the chunk size the agent would use.  Nothing is reduced to chunks yet, so
one recording serves every chunk size and every rule that turns regions
into chunk values.

The file is a compressed NumPy archive (``.npz``, no pickles) with
``format`` = ``loki-memtier-trace`` and ``version`` = 1; region starts are
stored as the gap from the previous region's end, and starts and lengths
in 4 KiB pages, which compresses well.

Replay (``RecordedTrace``) cuts the ranges into chunks (widened to whole
chunks, as a guest's RAM is), and per interval gives:

* ``accesses`` -- what the simulation scores hit ratios against: per
  chunk, the sum over the interval's snapshots of ``nr_accesses`` weighted
  by the pages of the chunk each region covers -- DAMON's best estimate of
  how much of the chunk was accessed how often;
* ``samples`` -- what a policy observes, as the agent's DAMON tracker
  would report it: its rule (``bytes`` or ``hottest``, see
  ``trackers.damon.regions_to_chunks``) applied to the interval's *last*
  ``window`` snapshots.  The agent reads DAMON once per interval, and one
  read reports one aggregation interval; with ``window`` 1 (the default)
  the tracker's aggregation is the recording's, with ``window`` k one
  k times as long, ending at the interval's end (as many as the interval
  holds at most: ``WINDOW_INTERVAL``).  ``bytes`` over k snapshots is the
  chunk's mean ``nr_accesses`` over all of them, what one aggregation k
  times as long would count; ``hottest`` the mean of each snapshot's
  hottest overlapping region (rounded up), which is at least what one
  longer aggregation would report for its hottest region.

Chunks that are neither present at either end of the recording nor ever
accessed during it hold no memory and are left out; the others make the
footprint.  Chunks present at the start are allocated (first touch) at
interval 0 in address order, as are chunks present at the end that were
never accessed; the rest when they are first accessed.
"""

import dataclasses
import json
import os
import zipfile

import numpy as np

from loki_nova.memtier import trackers
from loki_nova.memtier.trackers import damon

FORMAT = 'loki-memtier-trace'
VERSION = 1
PAGE = damon.PAGE
#: Keys every metadata record carries (others are kept as they come).
META_KEYS = ('sample_us', 'aggr_us', 'interval_s', 'chunk_size')
#: ``RecordedTrace``'s ``window`` for a tracker that sees every snapshot
#: of the interval (an aggregation interval as long as the interval).
WINDOW_INTERVAL = 'interval'


class TraceFileError(ValueError):
    """A file is not a recorded trace this version can read."""

    def __init__(self, path, problem):
        super().__init__('%s: %s' % (path, problem))
        self.path = path


@dataclasses.dataclass
class Recording:
    """One recording, in memory.

    :param regions: uint64 rows (start, end, nr_accesses, age), all
        snapshots one after another.
    :param offsets: int64[S + 1]: snapshot ``k`` is
        ``regions[offsets[k]:offsets[k + 1]]``.
    :param snapshot_interval: int64[S]: the interval of each snapshot, in
        order, from 0.
    :param snapshot_time: float64[S]: seconds since the recording started.
    :param ranges: uint64 rows (start, end): the address ranges recorded.
    :param present_start, present_end: uint64 rows (start, end): runs of
        pages present in RAM when the recording started and ended.
    :param meta: dict; at least ``sample_us``, ``aggr_us`` (DAMON's
        intervals), ``interval_s`` (one recording interval) and
        ``chunk_size`` (bytes, the agent's).
    """

    regions: np.ndarray
    offsets: np.ndarray
    snapshot_interval: np.ndarray
    snapshot_time: np.ndarray
    ranges: np.ndarray
    present_start: np.ndarray
    present_end: np.ndarray
    meta: dict

    @property
    def intervals(self):
        return int(self.snapshot_interval[-1]) + 1 \
            if len(self.snapshot_interval) else 0

    @property
    def max_accesses(self):
        """The most ``nr_accesses`` one aggregation interval can count."""
        return max(1, int(self.meta['aggr_us']) // int(self.meta['sample_us']))

    def snapshot(self, k):
        return self.regions[self.offsets[k]:self.offsets[k + 1]]

    def snapshots_of(self, interval):
        """Indices of the snapshots of ``interval``, in time order."""
        lo, hi = np.searchsorted(self.snapshot_interval,
                                 [interval, interval + 1])
        return range(int(lo), int(hi))


def from_snapshots(snapshots, ranges, meta, present_start=(),
                   present_end=()):
    """A ``Recording`` of ``snapshots``: (interval, seconds, regions) with
    regions rows of (start, end, nr_accesses[, age])."""
    rows, offsets, intervals, times = [], [0], [], []
    for interval, seconds, regions in snapshots:
        regions = np.asarray(regions, dtype=np.uint64)
        if not regions.size or regions.shape[-1] != 4:
            regions = _with_age(regions)
        rows.append(regions.reshape(-1, 4))
        offsets.append(offsets[-1] + len(regions))
        intervals.append(interval)
        times.append(seconds)
    return Recording(
        regions=(np.concatenate(rows) if rows
                 else np.zeros((0, 4), np.uint64)),
        offsets=np.asarray(offsets, dtype=np.int64),
        snapshot_interval=np.asarray(intervals, dtype=np.int64),
        snapshot_time=np.asarray(times, dtype=np.float64),
        ranges=_rows(ranges),
        present_start=_rows(present_start),
        present_end=_rows(present_end),
        meta=dict(meta))


def _with_age(regions):
    regions = np.asarray(regions, dtype=np.uint64).reshape(-1, 3)
    return np.concatenate(
        [regions, np.zeros((len(regions), 1), np.uint64)], axis=1)


def _rows(pairs):
    return np.asarray(pairs, dtype=np.uint64).reshape(-1, 2)


def check(recording, path='<recording>'):
    """Raise ``TraceFileError`` unless ``recording`` is consistent."""
    r = recording
    missing = [k for k in META_KEYS if k not in r.meta]
    if missing:
        raise TraceFileError(path, 'metadata lacks %s' % ', '.join(missing))
    try:
        if float(r.meta['interval_s']) <= 0 or int(r.meta['sample_us']) <= 0 \
                or int(r.meta['aggr_us']) <= 0 \
                or int(r.meta['chunk_size']) <= 0 \
                or int(r.meta['chunk_size']) % PAGE:
            raise ValueError
    except (TypeError, ValueError):
        raise TraceFileError(path, 'bad metadata: interval_s, sample_us, '
                             'aggr_us and chunk_size must be positive '
                             'numbers (chunk_size whole pages), got %s'
                             % {k: r.meta[k] for k in META_KEYS})
    if r.regions.ndim != 2 or r.regions.shape[1] != 4:
        raise TraceFileError(path, 'regions must be rows of 4 numbers')
    s = len(r.snapshot_interval)
    if s == 0:
        raise TraceFileError(path, 'holds no snapshot')
    if len(r.offsets) != s + 1 or len(r.snapshot_time) != s \
            or r.offsets[0] != 0 or r.offsets[-1] != len(r.regions) \
            or np.any(np.diff(r.offsets) < 0):
        raise TraceFileError(path, 'snapshot offsets do not match the '
                             'regions')
    if r.snapshot_interval[0] != 0 or np.any(
            np.diff(r.snapshot_interval) < 0) or np.any(
            np.diff(np.unique(r.snapshot_interval)) != 1):
        raise TraceFileError(path, 'snapshot intervals must run 0, 1, 2, '
                             '... in order, each with a snapshot')
    if not len(r.ranges):
        raise TraceFileError(path, 'names no address range')
    for name in ('ranges', 'present_start', 'present_end'):
        rows = getattr(r, name)
        if len(rows) and (np.any(rows[:, 1] <= rows[:, 0])
                          or np.any(rows % PAGE)):
            raise TraceFileError(path, '%s must be non-empty page-aligned '
                                 '(start, end) rows' % name)
    if len(r.regions) and (np.any(r.regions[:, 1] < r.regions[:, 0])
                           or np.any(r.regions[:, :2] % PAGE)):
        raise TraceFileError(path, 'regions must be page aligned with '
                             'start <= end')


def save(path, recording):
    """Write ``recording`` to ``path`` (atomically: a temporary file, then
    a rename)."""
    check(recording, path)
    r = recording
    pages = (r.regions[:, :2] // np.uint64(PAGE)).astype(np.int64)
    gaps = pages[:, 0].copy()
    if len(pages):
        previous_end = np.concatenate(([0], pages[:-1, 1]))
        gaps -= previous_end
        # Each snapshot's first region is stored from 0, not from the
        # previous snapshot's last.
        firsts = r.offsets[:-1][np.diff(r.offsets) > 0]
        gaps[firsts] = pages[firsts, 0]
    arrays = {
        'format': np.array(FORMAT),
        'version': np.array(VERSION),
        'meta': np.array(json.dumps(r.meta, sort_keys=True)),
        'region_start_gap': gaps,
        'region_pages': pages[:, 1] - pages[:, 0],
        'region_nr_accesses': r.regions[:, 2].astype(np.uint32),
        'region_age': r.regions[:, 3].astype(np.uint32),
        'snapshot_offsets': r.offsets.astype(np.int64),
        'snapshot_interval': r.snapshot_interval.astype(np.int32),
        'snapshot_time': r.snapshot_time.astype(np.float32),
        'ranges': r.ranges, 'present_start': r.present_start,
        'present_end': r.present_end,
    }
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, '.%s.tmp.%d'
                       % (os.path.basename(path), os.getpid()))
    try:
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path):
    """The ``Recording`` in ``path``; ``TraceFileError`` naming the file
    if it is missing, not a trace, of another version or damaged."""
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise TraceFileError(path, 'cannot read it: %s'
                             % (exc.strerror or exc)) from None
    except (ValueError, zipfile.BadZipFile, EOFError):
        raise TraceFileError(path, 'is not a loki-memtier trace (not a '
                             'NumPy .npz archive)') from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise TraceFileError(path, 'is not a loki-memtier trace (a bare '
                             'NumPy array, not an .npz archive)')
    with archive:
        try:
            fmt = str(archive['format']) if 'format' in archive else None
            if fmt != FORMAT:
                raise TraceFileError(path, 'is not a loki-memtier trace (it '
                                     'has no "format: %s" entry)' % FORMAT)
            version = int(archive['version'])
            if version != VERSION:
                raise TraceFileError(
                    path, 'is a loki-memtier trace of format version %d; '
                    'this loki-nova reads version %d' % (version, VERSION))
            meta = json.loads(str(archive['meta']))
            gaps = archive['region_start_gap'].astype(np.int64)
            lengths = archive['region_pages'].astype(np.int64)
            offsets = archive['snapshot_offsets'].astype(np.int64)
            columns = [archive['region_nr_accesses'],
                       archive['region_age']]
            recording = Recording(
                regions=None, offsets=offsets,
                snapshot_interval=archive['snapshot_interval'].astype(
                    np.int64),
                snapshot_time=archive['snapshot_time'].astype(np.float64),
                ranges=_rows(archive['ranges']),
                present_start=_rows(archive['present_start']),
                present_end=_rows(archive['present_end']),
                meta=meta)
        except TraceFileError:
            raise
        except (KeyError, ValueError, TypeError, zipfile.BadZipFile,
                EOFError, OSError) as exc:
            raise TraceFileError(path, 'is damaged: %s' % (exc,)) from None
    if not isinstance(meta, dict):
        raise TraceFileError(path, 'is damaged: its metadata is not a '
                             'JSON object')
    if not (len(gaps) == len(lengths) == len(columns[0])
            == len(columns[1])) or len(offsets) < 1 \
            or offsets[-1] != len(gaps):
        raise TraceFileError(path, 'is damaged: region columns of '
                             'different lengths')
    recording.regions = _decode_regions(gaps, lengths, offsets, columns,
                                        path)
    check(recording, path)
    return recording


def _decode_regions(gaps, lengths, offsets, columns, path):
    if np.any(lengths < 0) or np.any(np.diff(offsets) < 0):
        raise TraceFileError(path, 'is damaged: negative region lengths')
    starts = np.empty(len(gaps), dtype=np.int64)
    # Within a snapshot: start = previous end + gap; cumulative sums of
    # (gap + length) restarted at every snapshot.
    steps = gaps + lengths
    cum = np.cumsum(steps)
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        if hi > lo:
            base = cum[lo - 1] if lo else 0
            starts[lo:hi] = cum[lo:hi] - base - lengths[lo:hi]
    regions = np.empty((len(gaps), 4), dtype=np.uint64)
    regions[:, 0] = starts.astype(np.uint64) * np.uint64(PAGE)
    regions[:, 1] = (starts + lengths).astype(np.uint64) * np.uint64(PAGE)
    regions[:, 2] = columns[0]
    regions[:, 3] = columns[1]
    return regions


class _Chunks:
    """A minimal chunk layout (``starts``, ``sizes``) for the region rules."""

    def __init__(self, starts, sizes):
        self.starts = np.asarray(starts, dtype=np.uint64)
        self.sizes = np.asarray(sizes, dtype=np.uint64)

    def __len__(self):
        return len(self.starts)


def _aligned_chunks(ranges, chunk_size):
    """Chunk starts covering ``ranges`` widened to whole chunks."""
    size = np.uint64(chunk_size)
    lo = ranges[:, 0] // size * size
    hi = -(-ranges[:, 1] // size) * size
    order = np.argsort(lo, kind='stable')
    starts, last = [], None
    for a, b in zip(lo[order], hi[order]):
        a = a if last is None else max(a, last)
        if b > a:
            starts.append(np.arange(a, b, size, dtype=np.uint64))
            last = b
    return np.concatenate(starts) if starts else np.zeros(0, np.uint64)


def _covered(chunks, runs):
    """True for chunks that any (start, end) run overlaps."""
    if not len(runs) or not len(chunks):
        return np.zeros(len(chunks), dtype=bool)
    fake = np.concatenate([runs, np.ones((len(runs), 1), np.uint64)], 1)
    return damon.weighted_accesses(fake, chunks) > 0


class RecordedTrace:
    """A recording replayed as the simulator's trace of one guest.

    :param recording: a ``Recording`` (or a path to load).
    :param chunk_size: bytes (default: the recording's).
    :param rule: how the observing tracker turns regions into chunk
        values (``damon.CHUNK_RULES``).
    :param window: how many of an interval's snapshots, counted back from
        its end, one read of the tracker covers: a whole number >= 1 or
        ``WINDOW_INTERVAL`` (all); an interval with fewer snapshots gives
        all it has.
    :param scale: the samples' scale (``trackers.SAMPLE_SCALE``, or
        ``damon.TRACE_SCALE`` as DAMON's trace reports).
    """

    def __init__(self, recording, chunk_size=None, rule=None, window=1,
                 scale=trackers.SAMPLE_SCALE):
        if isinstance(recording, (str, os.PathLike)):
            path = os.fspath(recording)
            recording = load(path)
        else:
            path = recording.meta.get('path', '<recording>')
        self.path = path
        self.name = os.path.basename(path)
        self.recording = recording
        self.rule = rule or damon.DEFAULT_CHUNK_RULE
        if self.rule not in damon.CHUNK_RULES:
            raise ValueError('chunk rule must be one of %s, got %r'
                             % (', '.join(damon.CHUNK_RULES), self.rule))
        self.window = check_window(window)
        self.scale = scale
        self.chunk_size = int(chunk_size or recording.meta['chunk_size'])
        self.interval_s = float(recording.meta['interval_s'])
        self.intervals = recording.intervals
        self.max_accesses = recording.max_accesses
        starts = _aligned_chunks(recording.ranges, self.chunk_size)
        every = _Chunks(starts, np.full(len(starts), self.chunk_size))
        at_start = _covered(every, recording.present_start)
        at_end = _covered(every, recording.present_end)
        total = np.zeros(len(every), dtype=np.float64)
        for k in range(len(recording.offsets) - 1):
            total += damon.weighted_accesses(recording.snapshot(k), every)
        keep = at_start | at_end | (total > 0)
        self.layout = _Chunks(every.starts[keep], every.sizes[keep])
        self.chunks = len(self.layout)
        if not self.chunks:
            raise ValueError('%s: no chunk of the recorded ranges was ever '
                             'present or accessed' % path)
        self.totals = total[keep]
        self.initial = at_start[keep] | (at_end[keep] & (total[keep] == 0))

    @property
    def memory_mb(self):
        return self.chunks * self.chunk_size / (1024 * 1024)

    def _check(self, interval):
        if not 0 <= interval < self.intervals:
            raise IndexError('%s has %d intervals, asked for %d'
                             % (self.name, self.intervals, interval))

    def accesses(self, interval):
        """float64[chunks]: the interval's page-weighted nr_accesses."""
        self._check(interval)
        out = np.zeros(self.chunks, dtype=np.float64)
        for k in self.recording.snapshots_of(interval):
            out += damon.weighted_accesses(self.recording.snapshot(k),
                                           self.layout)
        return out

    def samples(self, interval):
        """uint8[chunks]: what the DAMON tracker reports at the interval's
        end, under ``rule``, over the last ``window`` snapshots."""
        self._check(interval)
        snapshots = self.recording.snapshots_of(interval)
        if self.window != WINDOW_INTERVAL:
            snapshots = snapshots[-self.window:]
        regions = [self.recording.snapshot(k)[:, :3] for k in snapshots]
        if self.rule == 'bytes':
            # One aggregation k times as long: the counts of all k add up
            # against k times the most one can count.
            return damon.regions_to_chunks(
                np.concatenate(regions), self.layout,
                self.max_accesses * len(regions), self.rule,
                scale=self.scale)
        values = [damon.regions_to_chunks(r, self.layout, self.max_accesses,
                                          self.rule, scale=self.scale)
                  for r in regions]
        total = np.sum(values, axis=0, dtype=np.int64)
        return (-(-total // len(values))).astype(np.uint8)


def check_window(window):
    """``window`` if it is a tracker window ``RecordedTrace`` takes, else a
    ValueError naming what is valid."""
    if window == WINDOW_INTERVAL:
        return window
    if isinstance(window, (int, np.integer)) and \
            not isinstance(window, bool) and window >= 1:
        return int(window)
    raise ValueError('tracker window must be a whole number of snapshots '
                     '>= 1 or %r, got %r' % (WINDOW_INTERVAL, window))
