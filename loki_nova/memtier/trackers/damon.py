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

"""DAMON (virtual address monitoring) through its sysfs interface.

One kdamond per guest, each with one ``vaddr`` context targeting the
guest's pid and one ``stat`` scheme whose access pattern matches every
region; each sample asks the kdamond to refresh the scheme's tried regions
(``update_schemes_tried_regions``) and reads their start, end and
``nr_accesses``: the sampled access checks that found the region accessed
in the last aggregation interval (sample 5 ms, aggregation 100 ms, so 0 to
20).  With ``source='trace'`` a sample instead takes every aggregation the
guest's kdamond reported since the previous sample, from DAMON's
``damon_aggregated`` trace event (``damontrace``): the mean over all of
them, so it sees the whole interval, not its last 100 ms, and no read
waits for a kdamond or for another guest's read.  The tried-regions
scheme stays configured either way (``loki-memtier record`` reads it).
How regions become one value per chunk is ``chunk_rule``: ``bytes`` (the
default) weighs each overlapping region by the bytes of the chunk it
covers, ``hottest`` takes the hottest overlapping region; see
``regions_to_chunks``.

DAMON may belong to someone else - the host's own memory management, an
operator running ``damo``.  This tracker only ever writes to DAMON when
there is no kdamond at all, or when every kdamond is one it created: it
records the kernel threads it started in ``state_dir`` (so a restarted
agent recognises its own), and otherwise reports itself unavailable
without writing anything.  Writing ``nr_kdamonds`` would tear down every
existing kdamond, so that check comes before any write.

On a KVM host the guest's accesses reach DAMON through KVM's MMU notifiers,
which clear and report the accessed bits of guest memory; under TCG they
are ordinary accesses of the QEMU process.  Under TCG the guest kernel
needs ``pti=on`` for DAMON to see re-accesses (see shared/RIG.md).
"""

import errno
import gzip
import json
import logging
import os

import numpy as np

from loki_nova.memtier import kernfs as kernfs_mod
from loki_nova.memtier import trackers
from loki_nova.memtier.trackers import damontrace

LOG = logging.getLogger(__name__)

PAGE = 4096
KDAMONDS = kernfs_mod.DAMON_DIR + '/admin/kdamonds'
#: Kernel modules that run kdamonds the sysfs interface does not list.
KERNEL_USERS = ('damon_reclaim', 'damon_lru_sort', 'damon_stat')
STATE_FILE = 'damon-kdamonds.json'
_U32_MAX = 2 ** 32 - 1
_ULONG_MAX = 2 ** 64 - 1
#: How a chunk's value is made of the DAMON regions overlapping it.
CHUNK_RULES = ('bytes', 'hottest')
DEFAULT_CHUNK_RULE = 'bytes'
#: The files of a tried region the tracker reads, in column order.
REGION_FIELDS = ('start', 'end', 'nr_accesses')
#: ... and what a recording keeps (``loki-memtier record``).
REGION_FIELDS_WITH_AGE = REGION_FIELDS + ('age',)
#: Where a sample's regions come from: ``tried_regions`` asks each
#: kdamond for its regions of the last aggregation interval; ``trace``
#: takes every aggregation since the last sample from DAMON's trace event
#: (``damontrace``).
SOURCES = ('tried_regions', 'trace')
#: The tracker's own default, for ``loki-memtier record`` (which reads the
#: tried regions with their age); the agent's is ``[memtier]
#: damon_source``, ``trace``.
DEFAULT_SOURCE = 'tried_regions'
#: DAMON's aggregation interval unless one is given, per source.  A
#: tried-regions read waits for the end of an aggregation, so it is kept
#: short; the trace carries one event per region and aggregation, so a
#: longer one cuts what the kernel formats and the agent parses (a guest
#: of 1000 regions: 10,000 events a second at 100 ms) and sees as much --
#: but each sample should hold a few: at most ``TRACE_AGGR_SHARE`` of the
#: time between samples, when known.
DEFAULT_AGGR_US = {'tried_regions': 100000, 'trace': 1000000}
TRACE_AGGR_SHARE = 0.2
#: The trace's sample scale (``trackers.SAMPLE_SCALE`` otherwise): its
#: samples are means over many aggregations, and on the common 0-20 scale
#: nearly every chunk rounds up to 1 or 2 -- on the recordings replayed
#: with a whole-interval view, 0-160 placed 0.974 of the oracle's hits on
#: average against 0.970.  A multiple of 20, so the default
#: heat_per_access (64) comes out whole (8).
TRACE_SCALE = 160
#: DAMON's sampling interval unless one is configured: with tried regions
#: 5 ms.  With the trace, each sample is the share of an interval's checks
#: that found a region accessed, on 0-``TRACE_SCALE``: at 5 ms a 5 s
#: interval has 1000 checks, and every chunk found in 1-6 of them reads
#: 1, so the chunks around the DRAM boundary of a skewed workload look
#: alike.  So with the trace the default is one check per unit of the
#: scale over the interval (31.25 ms at 5 s), never below 5 ms: in the
#: simulator (benchmarks/bench_policy.py: synthetic traces, DAMON's trace
#: read over whole 5 s intervals, medians of five seeds) loki placed 0.978
#: of the oracle's hits on Zipf against 0.959 at 5 ms, and 0.909 on
#: phases against 0.743.
DEFAULT_SAMPLE_US = 5000


def default_sample_us(source, interval_s=None):
    """DAMON's sampling interval for ``source`` when none is configured
    (see ``DEFAULT_SAMPLE_US``), with samples ``interval_s`` apart if
    known."""
    if source == 'trace' and interval_s:
        return max(DEFAULT_SAMPLE_US, int(interval_s * 1e6 / TRACE_SCALE))
    return DEFAULT_SAMPLE_US


def resolve_intervals(source, sample_us=None, aggr_us=None,
                      interval_s=None):
    """DAMON's (sampling, aggregation) intervals in microseconds for
    ``source``, each as configured or else its default: an unset sampling
    interval is ``default_sample_us`` but no longer than a configured
    aggregation (and never below ``DEFAULT_SAMPLE_US``); an unset
    aggregation is ``default_aggr_us``.  ValueError when the aggregation
    is shorter than the sampling."""
    if sample_us is None:
        sample_us = default_sample_us(source, interval_s)
        if aggr_us is not None:
            sample_us = max(DEFAULT_SAMPLE_US, min(sample_us, aggr_us))
    if aggr_us is None:
        aggr_us = default_aggr_us(source, sample_us, interval_s)
    if aggr_us < sample_us:
        raise ValueError('DAMON\'s aggregation interval (%d us) must be at '
                         'least its sampling interval (%d us)'
                         % (aggr_us, sample_us))
    return sample_us, aggr_us


#: With the trace, the agent empties the tracing buffer this often between
#: samples, so that it need only hold this long of the kdamonds' events.
COLLECT_EVERY_S = 0.5


class TraceSilent(trackers.NoSample):
    """A sample from DAMON's trace found no aggregation of the guest's
    kdamond to report."""


class DamonTracker(trackers.Tracker):
    name = 'damon'

    def __init__(self, kfs, state_dir=None, sample_us=None, aggr_us=None,
                 update_us=1000000, min_regions=10, max_regions=1000,
                 chunk_rule=DEFAULT_CHUNK_RULE, source=DEFAULT_SOURCE,
                 trace_buffer_kb=1024, interval_s=None):
        if chunk_rule not in CHUNK_RULES:
            raise ValueError('chunk_rule must be one of %s, got %r'
                             % (', '.join(CHUNK_RULES), chunk_rule))
        if source not in SOURCES:
            raise ValueError('source must be one of %s, got %r'
                             % (', '.join(SOURCES), source))
        # Checked before anything is written, whatever the source turns
        # out to be (an unset sampling interval is at least 5 ms).
        resolve_intervals('tried_regions', sample_us, aggr_us, interval_s)
        if source == 'trace' and chunk_rule != 'bytes':
            raise ValueError('the trace source sums the regions of many '
                             'aggregations and takes chunk_rule "bytes" '
                             'only, got %r' % (chunk_rule,))
        if not kfs.exists(KDAMONDS + '/nr_kdamonds'):
            raise trackers.TrackerUnavailable(
                'the kernel has no DAMON sysfs interface (%s is missing; '
                'needs CONFIG_DAMON_SYSFS)' % kfs.path(KDAMONDS))
        self.state_path = (os.path.join(state_dir, STATE_FILE)
                           if state_dir else None)
        # Read-only checks first; nothing is written unless all pass.
        for module in KERNEL_USERS:
            path = 'sys/module/%s/parameters/enabled' % module
            if kfs.exists(path) and kfs.read_text(path) == 'Y':
                raise trackers.TrackerUnavailable(
                    'DAMON is in use by the kernel\'s %s, and this agent '
                    'leaves it alone' % module)
        if kernel_config(kfs, 'CONFIG_DAMON_VADDR') is False:
            raise trackers.TrackerUnavailable(
                'the kernel is built without CONFIG_DAMON_VADDR (virtual '
                'address monitoring)')
        existing = kfs.read_int(KDAMONDS + '/nr_kdamonds')
        if existing and not self._ours(kfs, existing):
            raise trackers.TrackerUnavailable(
                'DAMON is in use: %d kdamond(s) exist that this agent did '
                'not create, and it leaves them alone (if they are left over '
                'from an agent that crashed, stop them by writing 0 to %s)'
                % (existing, kfs.path(KDAMONDS + '/nr_kdamonds')))
        # Only now may we write: DAMON is free or entirely ours.
        self.kfs = kernfs_mod.KernelFS(kfs.root, allow_damon_writes=True)
        self.nr_regions = (min_regions, max_regions)
        self.chunk_rule = chunk_rule
        self._slots = {}      # key -> kdamond index
        self._pids = {}       # key -> pid
        self._kdamonds = {}   # key -> the kdamond's pid
        self._trace = None
        #: key -> seconds of DAMON's monitoring the guest's last sample
        #: covers (aggregation intervals times their length).
        self.covered_s = {}
        self._stop_all(existing)
        self._set_count(0)
        self._probe_vaddr()
        self.damon_source = 'tried_regions'
        if source == 'trace':
            try:
                self._trace = damontrace.TraceStream(
                    self.kfs, buffer_kb=trace_buffer_kb)
                self.damon_source = 'trace'
                LOG.info('DAMON: samples take every aggregation since the '
                         'last, from the damon_aggregated trace event '
                         '(tracing instance %s, %d KiB per CPU)',
                         self._trace.dir, trace_buffer_kb)
            except damontrace.TraceUnavailable as exc:
                LOG.warning('DAMON: cannot read DAMON\'s trace events (%s); '
                            'reading each kdamond\'s tried regions instead, '
                            'one aggregation interval per sample', exc)
        sample_us, aggr_us = resolve_intervals(
            self.damon_source, sample_us, aggr_us, interval_s)
        self.attrs = dict(sample_us=sample_us, aggr_us=aggr_us,
                          update_us=update_us)
        if self.damon_source == 'trace':
            self.scale = TRACE_SCALE
        self.max_accesses = max(1, aggr_us // sample_us)
        LOG.info('DAMON: sampling every %d us, aggregating every %d us',
                 sample_us, aggr_us)

    # -- ownership --------------------------------------------------------

    def _ours(self, kfs, existing):
        if not self.state_path or not os.path.exists(self.state_path):
            return False
        try:
            with open(self.state_path) as f:
                recorded = json.load(f)['kdamond_pids']
        except (OSError, ValueError, KeyError):
            return False
        if len(recorded) != existing:
            return False
        for i, pid in enumerate(recorded):
            try:
                now = kfs.read_text('%s/%d/pid' % (KDAMONDS, i))
            except kernfs_mod.KernelFSError:
                return False
            if str(pid) != now:
                return False
        LOG.info('DAMON: taking back the %d kdamond(s) this agent started '
                 'before it restarted', existing)
        return True

    def _record(self):
        if not self.state_path:
            return
        pids = [self.kfs.read_int('%s/%d/pid' % (KDAMONDS, i))
                for i in range(len(self._slots))]
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        tmp = self.state_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump({'kdamond_pids': pids}, f)
        os.replace(tmp, self.state_path)

    # -- kdamond management ----------------------------------------------

    def _k(self, i, rel=''):
        return '%s/%d/%s' % (KDAMONDS, i, rel)

    def _stop_all(self, count):
        for i in range(count):
            if self.kfs.read_text(self._k(i, 'state')) == 'on':
                self.kfs.write_text(self._k(i, 'state'), 'off')

    def _set_count(self, n):
        self.kfs.write_text(KDAMONDS + '/nr_kdamonds', n)

    def _probe_vaddr(self):
        self._set_count(1)
        try:
            self.kfs.write_text(self._k(0, 'contexts/nr_contexts'), 1)
            ops = self.kfs.read_text(
                self._k(0, 'contexts/0/avail_operations')).split()
        finally:
            self._set_count(0)
        if 'vaddr' not in ops:
            raise trackers.TrackerUnavailable(
                'DAMON offers %s operations, not vaddr'
                % (', '.join(ops) or 'no'))

    def _configure(self, i, pid):
        ctx = 'contexts/0/'
        w = self.kfs.write_text
        w(self._k(i, 'contexts/nr_contexts'), 1)
        w(self._k(i, ctx + 'operations'), 'vaddr')
        for name, value in self.attrs.items():
            w(self._k(i, ctx + 'monitoring_attrs/intervals/' + name), value)
        w(self._k(i, ctx + 'monitoring_attrs/nr_regions/min'),
          self.nr_regions[0])
        w(self._k(i, ctx + 'monitoring_attrs/nr_regions/max'),
          self.nr_regions[1])
        w(self._k(i, ctx + 'targets/nr_targets'), 1)
        w(self._k(i, ctx + 'targets/0/pid_target'), pid)
        w(self._k(i, ctx + 'schemes/nr_schemes'), 1)
        scheme = ctx + 'schemes/0/'
        w(self._k(i, scheme + 'action'), 'stat')
        # The defaults (all 0) match nothing: open every range.
        for name, top in (('sz', _ULONG_MAX), ('nr_accesses', _U32_MAX),
                          ('age', _U32_MAX)):
            w(self._k(i, scheme + 'access_pattern/%s/min' % name), 0)
            w(self._k(i, scheme + 'access_pattern/%s/max' % name), top)

    def update(self, guests):
        pids = {key: g.identity.pid for key, (g, _) in guests.items()}
        if pids == self._pids:
            return
        # Not the guest set monitored until all below has worked: a
        # failure leaves the next update to start again.
        self._pids = None
        self._stop_all(len(self._slots))
        self._set_count(len(pids))
        self._slots = {}
        for i, (key, pid) in enumerate(sorted(pids.items())):
            self._configure(i, pid)
            self._slots[key] = i
        failed = []
        for key, i in self._slots.items():
            try:
                self.kfs.write_text(self._k(i, 'state'), 'on')
            except kernfs_mod.KernelFSError as exc:
                failed.append('%s (%s)' % (key, exc))
        if self._trace is not None:
            self._kdamonds = {
                key: self.kfs.read_int(self._k(i, 'pid'))
                for key, i in self._slots.items()}
            self._trace.watch(p for p in self._kdamonds.values() if p > 0)
        self._pids = pids
        self._record()
        if failed:
            LOG.warning('DAMON could not start monitoring %s',
                        ', '.join(failed))

    # -- sampling -------------------------------------------------------

    def _read_regions(self, i, fields):
        base = self._k(i, 'contexts/0/schemes/0/tried_regions')
        names = [n for n in self.kfs.listdir(base) if n.isdigit()]
        out = np.zeros((len(names), len(fields)), dtype=np.uint64)
        for row, name in enumerate(names):
            d = self.kfs.path('%s/%s/' % (base, name))
            for col, field in enumerate(fields):
                fd = os.open(d + field, os.O_RDONLY)
                try:
                    text = os.read(fd, 64)
                finally:
                    os.close(fd)
                try:
                    out[row, col] = int(text)
                except ValueError:
                    raise kernfs_mod.KernelFSError(
                        errno.EINVAL, '%s holds %r, not an integer'
                        % (d + field, text)) from None
        return out

    def regions(self, guest, fields=REGION_FIELDS):
        """The guest's DAMON regions of the last aggregation interval:
        uint64 rows of ``fields`` (start, end, nr_accesses[, age]), in
        the kernel's order.  Waits for the kdamond to refresh them."""
        i = self._slots.get(guest.key)
        if i is None:
            raise KeyError('guest %s is not monitored by DAMON' % guest.key)
        self.kfs.write_text(self._k(i, 'state'),
                            'update_schemes_tried_regions')
        return self._read_regions(i, fields)

    def sample(self, guest, layout):
        if self._trace is None:
            regions = self.regions(guest)
            self.covered_s[guest.key] = self.attrs['aggr_us'] / 1e6
            return regions_to_chunks(regions, layout, self.max_accesses,
                                     self.chunk_rule)
        pid = self._kdamonds.get(guest.key, -1)
        if pid <= 0:
            raise KeyError('guest %s is not monitored by DAMON' % guest.key)
        # Nothing yet only right after the kdamond started: wait for one
        # aggregation (it ends within about two of them).
        aggr_s = self.attrs['aggr_us'] / 1e6
        regions, aggregations = self._trace.take(pid, wait_s=3 * aggr_s)
        self._trace.check_lost()
        self.covered_s[guest.key] = aggregations * aggr_s
        if not aggregations:
            # No data is not "nothing was accessed".
            raise TraceSilent(
                'guest %s: DAMON\'s trace brought no whole aggregation of '
                'its kdamond (pid %d) in %.1f s' % (guest.key, pid,
                                                    3 * aggr_s))
        return regions_to_chunks(regions, layout, self.max_accesses,
                                 'bytes', aggregations, self.scale)

    @property
    def collect_every_s(self):
        return COLLECT_EVERY_S if self._trace is not None else None

    def collect(self):
        if self._trace is not None and self._pids:
            self._trace.drain()

    def forget(self, key):
        # The kdamond is reconfigured by the next update().
        self.covered_s.pop(key, None)

    def close(self):
        # The kdamonds first: switching the trace event off patches the
        # code they run (see damontrace).  The stream goes either way.
        try:
            if self._slots:
                self._stop_all(len(self._slots))
            self._set_count(0)
        finally:
            if self._trace is not None:
                self._trace.close()
                self._trace = None
        self._slots, self._pids = {}, {}
        if self.state_path and os.path.exists(self.state_path):
            os.unlink(self.state_path)


def default_aggr_us(source, sample_us, interval_s=None):
    """DAMON's aggregation interval for ``source`` when none is
    configured (``DEFAULT_AGGR_US``), with samples ``interval_s`` apart
    if known; never below ``sample_us``."""
    aggr_us = DEFAULT_AGGR_US[source]
    if source == 'trace' and interval_s:
        aggr_us = min(aggr_us, int(interval_s * 1e6 * TRACE_AGGR_SHARE))
    # A whole number of samples: DAMON counts that many per aggregation
    # (rounding down), and the tracker times its waits by aggr_us.
    return max(sample_us, aggr_us - aggr_us % sample_us)


def kernel_config(kfs, option):
    """True/False when the running kernel's config (/proc/config.gz or
    /boot/config-RELEASE) says whether ``option`` is built in, None when
    no config can be read."""
    text = None
    try:
        with gzip.open(kfs.path('proc/config.gz'), 'rt') as f:
            text = f.read()
    except OSError:
        try:
            release = kfs.read_text('proc/sys/kernel/osrelease')
            with open(kfs.path('boot/config-%s' % release)) as f:
                text = f.read()
        except (OSError, kernfs_mod.KernelFSError):
            return None
    return ('\n%s=y\n' % option) in ('\n' + text)


def weighted_accesses(regions, layout):
    """Per chunk, the sum over the DAMON regions overlapping it of
    ``nr_accesses`` times the 4 KiB pages of the chunk the region covers
    (int64).  ``regions``: rows of (start, end, nr_accesses, ...), page
    aligned as DAMON's are; they may overlap and come in any order."""
    out = np.zeros(len(layout), dtype=np.int64)
    if not len(regions) or not len(layout):
        return out
    regions = np.asarray(regions, dtype=np.uint64)
    # Page numbers relative to the layout's first page, clipped to its
    # span: small enough that pages * nr_accesses sums stay exact in int64.
    first = int(layout.starts[0]) // PAGE
    last = int((layout.starts[-1] + layout.sizes[-1]) // np.uint64(PAGE))
    span = last - first

    def pages(addresses):
        p = (addresses // np.uint64(PAGE)).astype(np.int64)
        return np.clip(p - first, 0, span)

    starts, ends = pages(regions[:, 0]), pages(regions[:, 1])
    value = regions[:, 2].astype(np.int64)
    keep = (ends > starts) & (value > 0)
    starts, ends, value = starts[keep], ends[keep], value[keep]
    chunk_lo = pages(layout.starts)
    chunk_hi = pages(layout.starts + layout.sizes)
    # integral(x) = sum of value * |[start, end) below page x|
    #            = sum over starts <= x of value * (x - start)
    #              - sum over ends <= x of value * (x - end)
    integral_lo = (_ramp(starts, value, chunk_lo)
                   - _ramp(ends, value, chunk_lo))
    integral_hi = (_ramp(starts, value, chunk_hi)
                   - _ramp(ends, value, chunk_hi))
    return integral_hi - integral_lo


def _ramp(points, value, x):
    """sum over ``points`` <= x of value * (x - point), for each x."""
    order = np.argsort(points, kind='stable')
    points, value = points[order], value[order]
    cum_value = np.concatenate(([0], np.cumsum(value)))
    cum_moment = np.concatenate(([0], np.cumsum(value * points)))
    k = np.searchsorted(points, x, side='right')
    return x * cum_value[k] - cum_moment[k]


def regions_to_chunks(regions, layout, max_accesses,
                      rule=DEFAULT_CHUNK_RULE, aggregations=1,
                      scale=trackers.SAMPLE_SCALE):
    """DAMON regions (start, end, nr_accesses rows) -> per-chunk samples on
    the 0..``scale`` scale (at most 255).

    ``bytes``: the chunk's mean ``nr_accesses`` over its bytes (bytes no
    region covers count as not accessed) and over ``aggregations``
    aggregation intervals whose regions ``regions`` holds together,
    rounded up, so that any access counts at least 1.  ``hottest``: the
    hottest region overlapping the chunk.  DAMON regions are often smaller
    than a 2 MiB chunk; the hottest region ranks a chunk with one hot 4 KiB
    page as high as a chunk hot all through, which on recorded workloads
    lost the ranking the classifier needs (see ``loki-memtier record``).
    """
    if rule not in CHUNK_RULES:
        raise ValueError('rule must be one of %s, got %r'
                         % (', '.join(CHUNK_RULES), rule))
    if not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 255:
        raise ValueError('scale must be a whole number of 1-255, got %r'
                         % (scale,))
    if not isinstance(aggregations, (int, np.integer)) or aggregations < 1 \
            or (rule != 'bytes' and aggregations != 1):
        raise ValueError('aggregations must be a whole number >= 1 (and 1 '
                         'for rule %r), got %r' % (rule, aggregations))
    out = np.zeros(len(layout), dtype=np.uint8)
    if not len(regions) or not len(layout):
        return out
    regions = np.asarray(regions, dtype=np.uint64)
    if rule == 'bytes':
        weighted = weighted_accesses(regions, layout)
        pages = (layout.sizes // np.uint64(PAGE)).astype(np.int64)
        denominator = np.maximum(pages, 1) * max_accesses * aggregations
        scaled = -(-weighted * int(scale) // denominator)
        return np.minimum(scaled, scale).astype(np.uint8)
    value = np.minimum(regions[:, 2] * np.uint64(scale) // max_accesses,
                       scale).astype(np.uint8)
    ends = layout.starts + layout.sizes
    lo = np.searchsorted(ends, regions[:, 0], side='right')
    hi = np.searchsorted(layout.starts, regions[:, 1], side='left')
    for a, b, v in zip(lo, hi, value):
        if b > a and v:
            np.maximum(out[a:b], v, out=out[a:b])
    return out
