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

"""The tiering agent's loop.

Every interval: watch (which guests, and are they still who they were)
→ track (access samples per chunk) → where each chunk is now (a
move_pages query of a few pages per chunk) → budget (the host arbiter
shares DRAM out by policy and hot demand) → classify and plan (the
guest's planner) → move (the mover, rate-capped, identity re-checked
before every batch) → stats.

Guests are independent: an error in one guest's interval is logged with
the guest's key and the others go on.  A guest whose process exits or
whose identity changes is dropped without moving anything more.  A watcher
that is unavailable (libvirtd restarting) keeps its last guests, which are
still re-verified before every move.
"""

import collections
import dataclasses
import functools
import logging
import threading
import time
import uuid as uuid_mod

import numpy as np

from loki_nova.memtier import classifier
from loki_nova.memtier import guest as guest_mod
from loki_nova.memtier import kernfs as kernfs_mod
from loki_nova.memtier import mover as mover_mod
from loki_nova.memtier.policy import arbiter
from loki_nova.memtier.policy import planner as planner_mod
from loki_nova.memtier import topology as topology_mod
from loki_nova.memtier import trackers
from loki_nova.memtier.trackers import damon

LOG = logging.getLogger(__name__)
MiB = 1024 * 1024
#: How many pages the probes of a chunk move along each interval: odd,
#: so that in a chunk of 2**n pages they come back to the same page only
#: after 2**n intervals.
PROBE_SHIFT = 37
#: Pages probed in a chunk whose first probes found nothing present.
REPROBES = 16
#: Intervals of heat kept per guest for ``guest_heat`` (heat maps).
HEAT_HISTORY = 120
#: Most columns a kept heat row has; larger guests are binned (the
#: hottest chunk of a bin stands for it).
HEAT_BINS = 512
#: Least time, in seconds, between the starts of two intervals when the
#: second is started early (by a reservation): however many reservations
#: arrive, the loop runs at most one early interval per spacing, and that
#: interval serves all of them.  Capped by ``[memtier] interval``.
EARLY_WAKE_SPACING_S = 1.0
#: Share of the interval that measuring the guests may take before the
#: agent warns.
MEASURE_SHARE_WARN = 0.5
#: The default hysteresis with a tracker that sees whole intervals (DAMON's
#: trace): chosen on the recordings replayed with that view (mean 0.970 of
#: the oracle against 0.961 at 256) and in the sandbox (bench_damon_read).
WHOLE_INTERVAL_HYSTERESIS = 64
#: A reservation is answered (``timeout``, it stays) after this many
#: intervals in a row that counted it but could not measure every guest,
#: rather than holding the caller for the whole of its timeout.
UNMEASURED_INTERVALS = 2
#: A step of the loop (one guest's measurement, its moves, listing the
#: guests) that has run for this many intervals is taken as hung:
#: reservations are answered at once, saying what the loop is stuck on.
STUCK_INTERVALS = 4
#: Most of the time the loop may spend working: when an interval's work
#: takes longer than this share of ``[memtier] interval``, the next one
#: starts late enough that the loop keeps to this share of a CPU.
MAX_BUSY_SHARE = 0.5
#: What a DRAM node has available for guests, from its meminfo: free pages,
#: page cache (guest RAM is anonymous or shared memory, not on these
#: lists) and reclaimable slab -- what the kernel's MemAvailable counts,
#: which a node's meminfo lacks, without its watermark corrections
#: (``dram_free_min_mb`` should cover the node's high watermarks).
AVAILABLE_FIELDS = ('MemFree', 'Active(file)', 'Inactive(file)',
                    'SReclaimable')


@dataclasses.dataclass
class GuestStats:
    """One guest in one interval."""

    key: str
    source: str
    policy: str
    floor_mb: int
    ceiling_mb: int
    budget_mb: float = 0.0
    dram_mb: float = 0.0
    slow_mb: float = 0.0
    hot_mb: float = 0.0
    promoted_mb: float = 0.0
    demoted_mb: float = 0.0
    failed_pages: int = 0
    error: str = None
    #: The interval ran to the end for this guest (figures are measured).
    tiered: bool = False


@dataclasses.dataclass
class IntervalReport:
    number: int
    wall_s: float
    cpu_s: float
    guests: dict
    #: Wall-clock time (time.time()) at the end of the interval.
    ended: float = 0.0
    #: Seconds of ``wall_s`` spent measuring the guests (the tracker's
    #: samples and the tier probes).
    measure_s: float = 0.0


class Reservation:
    """DRAM promised to an instance about to start (``reserve_dram``).

    ``reserve_dram`` admits it against the floors the loop last published;
    the next interval admits it again against the floors it has just
    reconciled (a guest may have started since, or the agent may not have
    listed its guests yet) and refuses it when they leave no room.  From
    that interval on it counts against the on-demand guests' shares, never
    against a floor: if floors grow later, the reservation holds only what
    they leave.  It is dropped when the instance appears as a managed
    guest (its floor then counts as its own), when ``release_dram``
    releases it, or after ``reservation_ttl`` seconds.

    ``answered`` is set once the caller waiting in ``reserve_dram`` can be
    told something, and ``outcome`` says what: ``settled`` (an interval
    ended with every guest within budgets that held the reservation whole),
    ``taken`` (its guest appeared), ``refused`` (``detail`` says why),
    ``released``, ``expired``, ``replaced`` (by a newer reserve_dram for the
    same instance) or ``unmeasured`` (guests could not be measured in
    ``UNMEASURED_INTERVALS`` intervals in a row; the reservation stays).
    """

    def __init__(self, instance_uuid, mb, ttl):
        self.instance_uuid = instance_uuid
        self.mb = mb
        self.made = time.monotonic()
        self.expires = self.made + ttl
        self.answered = threading.Event()
        self.outcome = None
        self.detail = None
        #: Checked against freshly reconciled floors by the loop.
        self.admitted = False
        self.over_budget = {}
        #: MiB of all pending reservations the floors left no room for,
        #: in the last interval that counted this one.
        self.short_mb = 0
        #: Intervals in a row that counted it and left a guest unmeasured.
        self.unmeasured = 0
        #: First interval whose budgets counted it, and the one that
        #: settled it.
        self.first_counted = None
        self.last_counted = None
        self.settled_in = None

    @property
    def intervals(self):
        """Intervals that ran with the reservation counted, up to the one
        that settled it (or the last one so far)."""
        if self.first_counted is None:
            return 0
        last = self.settled_in if self.settled_in is not None \
            else self.last_counted
        return last - self.first_counted + 1

    def describe(self):
        return '%s (%d MiB, %.0f s old)' % (
            self.instance_uuid, self.mb, time.monotonic() - self.made)

    def finish(self, outcome, detail=None):
        """Give the waiting caller its answer (the first outcome wins)."""
        if self.outcome is None:
            self.outcome, self.detail = outcome, detail
        self.answered.set()


class _Managed:
    def __init__(self, guest, chunk_size, params, backend):
        self.guest = guest
        self.layout = guest_mod.ChunkLayout(guest.ranges, chunk_size)
        self.planner = planner_mod.GuestPlanner(
            len(self.layout), chunk_size, params, backend)
        self.hot_mb = 0
        self.budget_mb = None
        #: Tier of each chunk after the last interval's moves.
        self.tier = None
        #: (interval, binned heat, binned DRAM share) of recent intervals.
        self.heat_history = collections.deque(maxlen=HEAT_HISTORY)

    def record_heat(self, number):
        heat, tier = self.planner.heat, self.tier
        n = len(heat)
        bins = min(n, HEAT_BINS)
        edges = np.linspace(0, n, bins + 1).astype(np.int64)
        starts = edges[:-1]
        hot = np.maximum.reduceat(heat, starts) if n else heat
        fast = (tier == classifier.TIER_FAST).astype(np.float32)
        share = (np.add.reduceat(fast, starts) / np.diff(edges)) if n \
            else fast
        self.heat_history.append((number, hot.astype(np.uint16),
                                  np.round(share * 100).astype(np.uint8)))

    def same(self, guest):
        """Still the same process and memory (the policy may change)."""
        return (guest.identity == self.guest.identity
                and guest.ranges == self.guest.ranges)


def watchers_from_conf(conf, kfs):
    out = []
    for name in conf.watchers:
        if name == 'process':
            from loki_nova.memtier.watcher import process
            out.append(process.ProcessWatcher(conf.registration_dir, kfs))
        elif name == 'libvirt':
            from loki_nova.memtier.watcher import libvirt as lv
            out.append(lv.LibvirtWatcher(conf.libvirt_uri, kfs))
    return out


def check_damon_intervals(conf):
    """Refuse DAMON intervals that cannot work together; warn when each
    sample would wait longer than an agent interval, or would see less
    than one aggregation.  An unset damon_aggr_us or damon_sample_us
    takes the source's default, which the tracker sets."""
    aggr_us = conf.damon_aggr_us
    if aggr_us is None:
        return
    sample_us = conf.damon_sample_us
    if aggr_us < (sample_us or damon.DEFAULT_SAMPLE_US):
        raise ValueError(
            '[memtier] damon_aggr_us (%d) must be at least damon_sample_us '
            '(%s): DAMON counts the samples of one aggregation interval'
            % (aggr_us, sample_us or '%d when unset'
               % damon.DEFAULT_SAMPLE_US))
    if aggr_us > conf.interval * 1e6:
        if conf.damon_source == 'trace':
            why = ('some intervals see no aggregation of a guest, and '
                   'those guests are not tiered then')
        else:
            why = 'each interval waits that long for every guest\'s regions'
        LOG.warning('[memtier] damon_aggr_us (%d us) is longer than the '
                    'agent\'s interval (%.1f s): %s', aggr_us,
                    conf.interval, why)


class Agent:
    """The loop; ``conf`` is the ``[memtier]`` group (or anything with its
    attributes).  Parts can be passed in; by default they come from the
    configuration and the kernel."""

    def __init__(self, conf, kfs=None, topology=None, tracker=None,
                 watchers=None, mover=None, stop=None):
        self.conf = conf
        if conf.tracker in ('auto', 'damon'):
            check_damon_intervals(conf)
        self.kfs = kfs or kernfs_mod.KernelFS('/')
        self.stop = stop or threading.Event()
        self.topology = topology or topology_mod.discover(
            self.kfs, dict(conf.node_tiers or {}))
        LOG.info('memory tiers: %s', self.topology.describe())
        # Before any tracker starts: a reserve that leaves guests no DRAM
        # is a configuration to fix, not one to tier with.
        topology_mod.check_dram_reserve(self.topology, conf.dram_reserve_mb)
        for conflict in topology_mod.kernel_tiering_conflicts(self.kfs):
            LOG.warning('%s', conflict)
        self.watchers = (watchers if watchers is not None
                         else watchers_from_conf(conf, self.kfs))
        self.tracker = tracker or trackers.create(
            conf.tracker, self.kfs, damon={
                'state_dir': conf.state_dir,
                'sample_us': conf.damon_sample_us,
                'aggr_us': conf.damon_aggr_us,
                'source': conf.damon_source,
                'trace_buffer_kb': conf.damon_trace_buffer_kb,
                'interval_s': conf.interval})
        # A tracker that collects between its samples (DAMON's trace) also
        # collects while a paced move waits for its slot: one guest's long
        # move must not let the tracing buffer overflow.
        every = getattr(self.tracker, 'collect_every_s', None)
        self.mover = mover or mover_mod.Mover(
            mover_mod.RateLimiter(conf.move_rate_mb_per_s * MiB,
                                  stop=self.stop,
                                  meanwhile=self._collect if every else None,
                                  meanwhile_every_s=every),
            batch_pages=conf.move_batch_pages)
        self.chunk_size = conf.chunk_size_kb * 1024
        try:
            self.params = self._classifier_params(conf)
        except Exception:
            self.tracker.close()
            raise
        self.tier_of_node = np.array(self.topology.node_to_tier(),
                                     dtype=np.uint8)
        self.guests = {}
        self.number = 0
        #: The guest count a slow measurement was last warned about.
        self._slow_measure_guests = None
        self.last_report = None
        self._last_seen = {}
        self._watch_errors = {}
        #: Set to start the next interval early (a reservation, a stop);
        #: early starts are at least ``EARLY_WAKE_SPACING_S`` apart.
        self.wake = threading.Event()
        #: Guards ``reservations`` and ``_floors`` (read by RPC threads).
        self._lock = threading.Lock()
        self.reservations = {}
        self._floors = {}
        #: What the loop is doing: (interval, activity, since) or None
        #: between intervals; read by RPC threads to tell a hung step.
        self._step = None
        #: MiB of pending reservations the floors left no room for.
        self._reservations_short_mb = 0
        # [memtier] dram_free_min_mb: whether it limits the budgets now,
        # and whether an unreadable meminfo was reported.
        self._free_limited = False
        # Whether the last rest was stretched for MAX_BUSY_SHARE.
        self._stretched = False
        self._free_unknown_warned = False
        #: Called with each IntervalReport (usage metering).
        self.listeners = []

    # -- watch ------------------------------------------------------------

    def _watch(self):
        from loki_nova.memtier.watcher import WatcherUnavailable
        found = {}
        for w in self.watchers:
            name = type(w).__name__
            try:
                seen = w.scan()
            except Exception as exc:
                if not isinstance(exc, WatcherUnavailable):
                    LOG.exception('%s failed', name)
                if self._watch_errors.get(name) != str(exc):
                    LOG.warning('%s unavailable, keeping its %d known '
                                'guest(s): %s', name,
                                len(self._last_seen.get(name, {})), exc)
                self._watch_errors[name] = str(exc)
                seen = self._last_seen.get(name, {})
            else:
                if self._watch_errors.pop(name, None):
                    LOG.info('%s is back', name)
                self._last_seen[name] = seen
            found.update(seen)
        return found

    def _forget_seen(self, key):
        for seen in self._last_seen.values():
            seen.pop(key, None)

    def _reconcile(self, found):
        for key in list(self.guests):
            if key not in found or not self.guests[key].same(found[key]):
                self._drop(key, 'no longer %s' % (
                    'listed' if key not in found else 'the same process'))
            elif found[key].policy != self.guests[key].guest.policy:
                LOG.info('guest %s: policy changed from %s to %s', key,
                         self.guests[key].guest.policy, found[key].policy)
                self.guests[key].guest = dataclasses.replace(
                    found[key], proc=self.guests[key].guest.proc)
        for key, g in found.items():
            if key in self.guests:
                continue
            try:
                # Nothing is done to a process (not even tracker set-up)
                # before its identity is checked; from then on its
                # /proc/PID directory is held open, so nothing read or
                # written through it can reach a process that takes the
                # pid over (guest.attach).
                g = guest_mod.attach(self.kfs, g)
                m = _Managed(g, self.chunk_size, self.params,
                             self.conf.classifier_backend)
            except guest_mod.GuestGone as exc:
                LOG.info('not managing %s: %s', key, exc)
                self._forget_seen(key)
                continue
            except Exception:
                guest_mod.release(g)
                LOG.exception('cannot manage guest %s', key)
                continue
            self.guests[key] = m
            LOG.info('managing guest %s (%s, %s; %d MiB in %d chunks; '
                     '%s, floor %d MiB, ceiling %d MiB)', key, g.source,
                     g.identity.describe(), g.ram_bytes // MiB,
                     len(m.layout), g.policy.policy, g.policy.floor_mb,
                     g.policy.ceiling_mb)

    def _publish_floors(self):
        """After reconcile: the floors RPC threads check reservations
        against; reservations whose guest has appeared (its floor now
        counts as its own) or that expired are dropped, and new ones are
        admitted against these floors, in the order they came."""
        now = time.monotonic()
        capacity = self.topology.fast_mb
        reserve = self.conf.dram_reserve_mb
        with self._lock:
            self._floors = {k: m.guest.policy.floor_mb
                            for k, m in self.guests.items()}
            floors = sum(self._floors.values())
            room = arbiter.reservation_room(capacity, reserve, floors)
            held = 0
            for uuid, r in list(self.reservations.items()):
                if uuid in self.guests:
                    LOG.info('reservation %s taken up: the guest is '
                             'managed', r.describe())
                    outcome = 'taken'
                elif now >= r.expires:
                    LOG.warning('reservation %s expired: no guest with that '
                                'uuid appeared', r.describe())
                    outcome = 'expired'
                elif not r.admitted and held + r.mb > room:
                    outcome = 'refused'
                    r.detail = (
                        'DRAM floors of %d MiB of the %d guest(s) running, '
                        'host reserve %d MiB and earlier reservations of %d '
                        'MiB leave %d MiB of the %d MiB fast tier, less '
                        'than %d MiB; nothing was reserved'
                        % (floors, len(self._floors), reserve, held,
                           max(0, room - held), capacity, r.mb))
                    LOG.warning('reservation %s refused: %s', r.describe(),
                                r.detail)
                else:
                    r.admitted = True
                    held += r.mb
                    continue
                del self.reservations[uuid]
                r.finish(outcome, r.detail)

    def _drop(self, key, reason):
        m = self.guests.pop(key, None)
        if m is not None:
            LOG.info('guest %s dropped: %s', key, reason)
            self.tracker.forget(key)
            guest_mod.release(m.guest)
        if isinstance(reason, (guest_mod.GuestGone, ProcessLookupError)):
            # A watcher that is down must not bring it back.
            self._forget_seen(key)

    # -- observe ------------------------------------------------------------

    def _probe(self, m, chunks, per_chunk, shift=0):
        """Tier codes of ``chunks`` (all when None) from a move_pages query
        of ``per_chunk`` pages each (moved ``shift`` pages along): the
        majority of present pages decides; none present is absent."""
        addrs, owner = m.layout.probes(per_chunk, chunks, shift)
        status = self.mover.query(
            m.guest.identity.pid, addrs,
            functools.partial(guest_mod.verify, self.kfs, m.guest))
        code = np.where(status >= 0,
                        self.tier_of_node[np.clip(status, 0, 255)],
                        classifier.TIER_ABSENT)
        n = len(m.layout)
        fast = np.bincount(owner[code == classifier.TIER_FAST], minlength=n)
        slow_mask = (code != classifier.TIER_FAST) & \
            (code != classifier.TIER_ABSENT)
        slow = np.bincount(owner[slow_mask], minlength=n)
        slow_code = np.zeros(n, dtype=np.uint8)
        np.maximum.at(slow_code, owner[slow_mask], code[slow_mask])
        tier = np.where((fast >= slow) & (fast > 0), classifier.TIER_FAST,
                        np.where(slow > 0, slow_code,
                                 classifier.TIER_ABSENT)).astype(np.uint8)
        return tier if chunks is None else tier[chunks]

    def chunk_tiers(self, m):
        """Tier code of every chunk.  A chunk whose probes found no page
        is probed again at more pages before it counts as absent (absent
        chunks are never moved, so one left in DRAM would escape the
        budget).

        The probed pages move along every interval (``PROBE_SHIFT`` pages
        further each time), so that over the intervals every page of a
        chunk is probed.  Pages a guest touches for the first time land
        in DRAM, also in chunks that were demoted: probed always at the
        same page, such a chunk would read as slow for ever while part of
        it holds DRAM outside any budget.  Probed along, it reads as fast
        when a probe meets those pages, and if it is not hot enough for
        DRAM it is demoted whole."""
        tier = self._probe(m, None, self.conf.probes_per_chunk,
                           shift=self.number * PROBE_SHIFT)
        absent = np.flatnonzero(tier == classifier.TIER_ABSENT)
        if len(absent):
            tier[absent] = self._probe(m, absent, REPROBES)
        return tier

    # -- budget -----------------------------------------------------------

    def budgets(self, keys, reserved_mb=0, dram_mb=None):
        """DRAM budgets of the managed guests ``keys`` (those measured
        this interval).  The floors of managed guests left out still hold
        their DRAM, and pending reservations (``reserved_mb``) take only
        what all the floors leave: neither cuts a floor.

        With ``dram_mb`` (MiB of DRAM each of ``keys`` holds, as measured
        this interval), DRAM above the floors is also limited to what
        those guests hold plus what the DRAM nodes have available beyond
        ``dram_free_min_mb`` (``free_dram_limit``)."""
        demands = []
        for key in keys:
            p = self.guests[key].guest.policy
            demands.append(arbiter.GuestDemand(
                key, p.policy, p.floor_mb, p.ceiling_mb,
                int(self.guests[key].hot_mb)))
        keys = set(keys)
        unmeasured = sum(m.guest.policy.floor_mb
                         for k, m in self.guests.items() if k not in keys)
        capacity = max(0, self.topology.fast_mb - unmeasured)
        reserve = self.conf.dram_reserve_mb
        if dram_mb is not None:
            held = sum(dram_mb.values())
            floors = sum(d.floor_mb for d in demands)
            limit, available = self.free_dram_limit(held, floors)
            # Limited: on-demand guests wish for more than available DRAM
            # leaves them (after the reservations), and more than the
            # capacity alone would.
            wanted = sum(d.wanted_extra_mb for d in demands)
            limited = limit is not None and wanted > 0 and \
                limit < min(capacity - reserve,
                            floors + reserved_mb + wanted)
            if limit is not None:
                capacity = min(capacity, limit + reserve)
            if limited != self._free_limited:
                if limited:
                    LOG.info('DRAM above the floors is limited by available '
                             'DRAM: managed guests hold %d MiB and the DRAM '
                             'nodes have %d MiB available (free, page '
                             'cache, reclaimable slab), of which %d MiB '
                             'stay free '
                             '(dram_free_min_mb): budgets add up to at most '
                             '%d MiB (floors %d MiB)', held, available,
                             self.conf.dram_free_min_mb, limit, floors)
                else:
                    LOG.info('DRAM above the floors is no longer limited by '
                             'available DRAM')
                self._free_limited = limited
        try:
            return arbiter.allocate(capacity, reserve, demands, reserved_mb)
        except arbiter.InsufficientDram as exc:
            # Only the floors themselves (and the host reserve) can get
            # here: a reservation never takes a floor's place.
            usable = max(0, capacity - reserve)
            scale = usable / max(1, exc.floors_mb)
            LOG.error('%s; every floor is scaled by %.2f until it fits',
                      exc, scale)
            return {d.name: d.floor_mb * scale for d in demands}

    def free_dram_limit(self, held_mb, floors_mb):
        """The most DRAM (MiB) the guests measured this interval may be
        given, who hold ``held_mb`` and whose floors are ``floors_mb``:
        what they hold plus what the DRAM nodes have available
        (``AVAILABLE_FIELDS``) beyond ``dram_free_min_mb``, never below
        their floors, and the MiB available: (None, None) when the nodes'
        meminfo cannot be read (no limit; a warning once).

        ``held_mb`` counts a chunk whole when most of its probed pages are
        in DRAM, so a guest that has touched only part of such chunks
        counts a little more than it holds."""
        available = self._available_fast_mb()
        if available is None:
            if not self._free_unknown_warned:
                LOG.warning('cannot read the DRAM nodes\' meminfo: on-demand '
                            'guests are not held to [memtier] '
                            'dram_free_min_mb')
                self._free_unknown_warned = True
            return None, None
        return max(floors_mb, int(held_mb + available
                                  - self.conf.dram_free_min_mb)), available

    def _reservations_short(self, reserved_mb):
        """MiB of ``reserved_mb`` the floors of all managed guests leave no
        room for (0 when it all fits); a change is logged."""
        floors = sum(m.guest.policy.floor_mb for m in self.guests.values())
        room = arbiter.reservation_room(self.topology.fast_mb,
                                        self.conf.dram_reserve_mb, floors)
        short = max(0, reserved_mb - room)
        if short != self._reservations_short_mb:
            if short:
                LOG.warning('pending reservations of %d MiB are %d MiB '
                            'short: the floors of running guests (%d MiB) '
                            'and the host reserve (%d MiB) come first and '
                            'leave %d MiB; no floor is cut', reserved_mb,
                            short, floors, self.conf.dram_reserve_mb, room)
            else:
                LOG.info('pending reservations of %d MiB are held whole '
                         'again', reserved_mb)
            self._reservations_short_mb = short
        return short

    # -- the interval ---------------------------------------------------------

    def _doing(self, activity):
        """Note what the loop does now (None: resting between intervals)
        for RPC threads that must tell a hung step from a slow one."""
        self._step = None if activity is None else (
            self.number, activity, time.monotonic())

    def run_interval(self):
        try:
            return self._run_interval()
        finally:
            self._doing(None)

    def _run_interval(self):
        self.number += 1
        wall0, cpu0 = time.monotonic(), time.process_time()
        self._doing('listing guests')
        self._reconcile(self._watch())
        self._publish_floors()
        try:
            self._doing('updating the %s tracker' % self.tracker.name)
            self.tracker.update({k: (m.guest, m.layout)
                                 for k, m in self.guests.items()})
        except Exception:
            LOG.exception('the %s tracker could not follow the guest set',
                          self.tracker.name)
        stats = {k: GuestStats(k, m.guest.source, m.guest.policy.policy,
                               m.guest.policy.floor_mb,
                               m.guest.policy.ceiling_mb)
                 for k, m in self.guests.items()}
        observed = {}
        measure0 = time.monotonic()
        measured = len(self.guests)
        for key, m in list(self.guests.items()):
            self._doing('measuring guest %s' % key)
            try:
                guest_mod.verify(self.kfs, m.guest)
                access = self.tracker.sample(m.guest, m.layout)
                observed[key] = (access, self.chunk_tiers(m))
            except (guest_mod.GuestGone, ProcessLookupError) as exc:
                self._drop(key, exc)
                stats.pop(key, None)
            except trackers.NoSample as exc:
                LOG.warning('guest %s: not tiered this interval: %s', key,
                            exc)
                stats[key].error = str(exc)
            except Exception as exc:
                LOG.exception('guest %s: sampling failed', key)
                stats[key].error = str(exc)
        measure_s = time.monotonic() - measure0
        self._check_measure_time(measured, measure_s)
        with self._lock:
            # (one made since _publish_floors waits for the next interval,
            # which admits it against the floors)
            pending = [r for r in self.reservations.values() if r.admitted]
        for r in pending:
            if r.first_counted is None:
                r.first_counted = self.number
            r.last_counted = self.number
        reserved = sum(r.mb for r in pending)
        short = self._reservations_short(reserved)
        self._doing('computing budgets')
        try:
            budgets = self.budgets(list(observed), reserved, {
                key: self.guests[key].layout.sizes[
                    tier == classifier.TIER_FAST].sum() / MiB
                for key, (access, tier) in observed.items()})
        except Exception:
            LOG.exception('the arbiter failed; no moves this interval')
            observed = {}
        share = self.conf.move_rate_mb_per_s * MiB / max(1, len(observed))
        for key, (access, tier) in observed.items():
            if self.stop.is_set():
                break
            m, st = self.guests[key], stats[key]
            self._doing('tiering guest %s' % key)
            try:
                self._tier_guest(m, st, access, tier, budgets[key], share)
            except (guest_mod.GuestGone, ProcessLookupError) as exc:
                self._drop(key, exc)
                stats.pop(key, None)
            except mover_mod.MoveError as exc:
                LOG.error('guest %s: %s', key, exc)
                st.error = str(exc)
            except Exception as exc:
                LOG.exception('guest %s: tiering failed', key)
                st.error = str(exc)
            self._collect()
        report = IntervalReport(self.number, time.monotonic() - wall0,
                                time.process_time() - cpu0, stats,
                                time.time(), measure_s)
        self.last_report = report
        self._doing(None)
        self._settle(pending, stats, short)
        for listener in self.listeners:
            try:
                listener(report)
            except Exception:
                LOG.exception('interval report listener %r failed',
                              listener)
        LOG.info('interval %d: %d guest(s), %.1f MiB promoted, %.1f MiB '
                 'demoted, %.3f s wall, %.3f s CPU', report.number,
                 len(stats), sum(s.promoted_mb for s in stats.values()),
                 sum(s.demoted_mb for s in stats.values()), report.wall_s,
                 report.cpu_s)
        return report

    def _classifier_params(self, conf):
        """The classifier's parameters from the configuration, for the
        tracker's sample scale (``trackers.access_weight``)."""
        scale = getattr(self.tracker, 'scale', trackers.SAMPLE_SCALE)
        weight, unit = trackers.heat_weights(conf.heat_per_access, scale)
        if scale != trackers.SAMPLE_SCALE:
            LOG.info('samples run 0-%d: heat %d per unit, %d per sampled '
                     'access on 0-%d', scale, weight, unit,
                     trackers.SAMPLE_SCALE)
            if unit != conf.heat_per_access:
                LOG.warning('[memtier] heat_per_access %d is not a multiple '
                            'of %d: with samples of 0-%d it counts as %d',
                            conf.heat_per_access,
                            scale // trackers.SAMPLE_SCALE, scale, unit)
        return classifier.ClassifierParams(
            decay_shift=conf.heat_decay_shift, access_weight=weight,
            hysteresis=self._hysteresis(conf), unit_heat=unit)

    def _hysteresis(self, conf):
        """[memtier] hysteresis, or its default for the tracker: samples
        of a whole interval (DAMON's trace) want a lower one."""
        if conf.hysteresis is not None:
            return conf.hysteresis
        if getattr(self.tracker, 'damon_source', None) == 'trace':
            LOG.info('hysteresis %d (the default with DAMON\'s trace)',
                     WHOLE_INTERVAL_HYSTERESIS)
            return WHOLE_INTERVAL_HYSTERESIS
        return classifier.ClassifierParams().hysteresis

    def _check_measure_time(self, guests, seconds):
        """Warn when measuring ``guests`` guests took more than half the
        interval: once while it goes on with as many or fewer guests, and
        again when it happens with more, or after it had stopped."""
        if seconds <= self.conf.interval * MEASURE_SHARE_WARN:
            self._slow_measure_guests = None
            return
        if self._slow_measure_guests is not None and \
                guests <= self._slow_measure_guests:
            return
        self._slow_measure_guests = guests
        if getattr(self.tracker, 'damon_source', None) == 'trace':
            why = (' DAMON\'s trace is read without waiting for the '
                   'kdamonds, except for one that has reported no '
                   'aggregation since the last interval. Raise [memtier] '
                   'interval.')
        elif self.tracker.name == 'damon':
            why = (' Each read of a guest\'s DAMON regions waits for the '
                   'end of a DAMON aggregation interval (%d us; in the '
                   'sandbox kernel up to about 3 of them), and the kernel '
                   'serves one read at a time, so this grows with the guests: '
                   'set [memtier] damon_source = trace (reads that do not '
                   'wait), raise interval or lower damon_aggr_us.'
                   % self.tracker.attrs['aggr_us'])
        else:
            why = ' Raise [memtier] interval.'
        LOG.warning('measuring %d guest(s) took %.1f s of the %.1f s '
                    'interval, leaving little of it for moving pages.%s',
                    guests, seconds, self.conf.interval, why)

    def _tier_guest(self, m, st, access, tier, budget_mb, rate):
        if m.budget_mb is None or abs(m.budget_mb - budget_mb) >= 1:
            LOG.info('guest %s: DRAM budget %s -> %d MiB (%s, floor %d, '
                     'ceiling %d, hot %d MiB)', m.guest.key,
                     'unset' if m.budget_mb is None
                     else '%d' % m.budget_mb, budget_mb,
                     m.guest.policy.policy, m.guest.policy.floor_mb,
                     m.guest.policy.ceiling_mb, m.hot_mb)
        m.budget_mb = budget_mb
        plan = m.planner.plan(access, tier, budget_mb, rate,
                              self.conf.interval)
        LOG.debug('guest %s: %d chunks sampled accessed, %d in DRAM; '
                  'threshold %d, promote %d, demote %d (cap %d chunks, '
                  'move scale %.3f)', m.guest.key,
                  int(np.count_nonzero(access)),
                  int(np.count_nonzero(tier == classifier.TIER_FAST)),
                  plan.classification.threshold, len(plan.promote),
                  len(plan.demote), plan.cap_chunks, m.planner.move_scale)
        verify = functools.partial(guest_mod.verify, self.kfs, m.guest)
        sizes = m.layout.sizes
        for chunks, target in plan.batches:
            if target == classifier.TIER_FAST:
                node = self.topology.promotion_target()
            else:
                node = self.topology.demotion_target()
            pages = m.layout.pages(chunks)
            res = self.mover.move(m.guest.identity.pid, pages, node, verify)
            moved = res.bytes_placed / MiB
            if target == classifier.TIER_FAST:
                st.promoted_mb += moved
            else:
                st.demoted_mb += moved
            st.failed_pages += res.failed
            complete = res.failed == 0 and \
                res.placed + res.absent + res.shared == len(pages)
            if complete or self.mover.query_only:
                # (query mode stands in for moves that worked)
                tier[chunks] = target
            else:
                LOG.info('guest %s: %d of %d pages not moved to node %d%s',
                         m.guest.key, len(pages) - res.placed - res.absent
                         - res.shared, len(pages), node,
                         '' if not self.stop.is_set() else ' (stopping)')
                tier[chunks] = self._probe(m, chunks,
                                           self.conf.probes_per_chunk)
        m.tier = tier
        m.record_heat(self.number)
        c = plan.classification
        m.hot_mb = m.planner.hot_chunks(c.histogram) * self.chunk_size / MiB
        st.budget_mb = budget_mb
        st.hot_mb = m.hot_mb
        st.dram_mb = float(sizes[tier == classifier.TIER_FAST].sum()) / MiB
        slow = (tier != classifier.TIER_FAST) & \
            (tier != classifier.TIER_ABSENT)
        st.slow_mb = float(sizes[slow].sum()) / MiB
        st.tiered = True

    def run(self, max_intervals=None):
        """Run intervals until ``stop`` is set (or ``max_intervals``)."""
        try:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    self.run_interval()
                except Exception:
                    # Each guest is isolated inside; this is the last net
                    # so that one bad interval never ends the service.
                    LOG.exception('interval %d failed', self.number)
                if max_intervals and self.number >= max_intervals:
                    break
                self._rest(start)
        finally:
            self.close()

    def _rest(self, started):
        """Wait for the next interval: ``interval`` seconds after the start
        of the last one, or earlier when woken, but never sooner than
        ``EARLY_WAKE_SPACING_S`` after it started.  Wakes that come in the
        meantime (a flood of reservations) are served by one interval.
        Meanwhile the tracker collects every ``collect_every_s``, if it
        asks to (DAMON's trace: what the tracing buffer holds)."""
        spacing = min(EARLY_WAKE_SPACING_S, self.conf.interval)
        due = started + self.conf.interval
        # An interval whose work outlasted its share of the time: rest
        # long enough that the loop stays within MAX_BUSY_SHARE of a CPU,
        # rather than running intervals back to back on a host that is
        # short of CPU (which would only make it shorter).
        work = time.monotonic() - started
        stretched = work > self.conf.interval * MAX_BUSY_SHARE
        if stretched:
            due = max(due, started + work / MAX_BUSY_SHARE)
            spacing = max(spacing, work / MAX_BUSY_SHARE)
        if stretched != self._stretched:
            if stretched:
                LOG.warning('interval %d took %.1f s of work, more than %d%% '
                            'of the %.1f s interval: the next starts %.1f s '
                            'after it started, so that the agent takes no '
                            'more than that share of a CPU (raise [memtier] '
                            'interval, or give the host more CPU)',
                            self.number, work, MAX_BUSY_SHARE * 100,
                            self.conf.interval, work / MAX_BUSY_SHARE)
            else:
                LOG.info('interval %d took %.1f s: intervals are %.1f s '
                         'apart again', self.number, work,
                         self.conf.interval)
            self._stretched = stretched
        every = getattr(self.tracker, 'collect_every_s', None)
        collect_at = None if every is None else time.monotonic() + every
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= due:
                break
            if collect_at is not None and now >= collect_at:
                self._collect()
                collect_at = time.monotonic() + every
                continue
            if not self.wake.is_set():
                self.wake.wait(due - now if collect_at is None
                               else min(due, collect_at) - now)
                continue
            if now >= started + spacing:
                LOG.debug('interval %d starts %.1f s early, for pending '
                          'reservations', self.number + 1, due - now)
                break
            self.stop.wait(started + spacing - now)
        # Cleared before the interval starts: a reservation made during
        # it wakes the next one.
        self.wake.clear()

    def _collect(self):
        """The tracker's ``collect()`` between its samples (between
        intervals, after a guest's moves, while a move waits); a failure
        is the next sample's to report."""
        try:
            self.tracker.collect()
        except Exception as exc:
            LOG.debug('the tracker could not collect between samples: %s',
                      exc)

    def shutdown(self):
        """Stop after the move batch in flight (signal-safe)."""
        self.stop.set()
        self.wake.set()

    # -- reservations and stats (called from RPC threads) ------------------

    def _settle(self, counted, stats, short_mb=0):
        """A reservation counted by this interval's budgets is settled
        when the budgets held every reservation whole (``short_mb`` 0) and
        every guest ended the interval within its budget (one chunk of
        slack for rounding).  One that is not, with guests left
        unmeasured ``UNMEASURED_INTERVALS`` times in a row, is answered
        anyway (it stays)."""
        slack = self.chunk_size / MiB
        over = {}
        unmeasured = False
        for k, st in stats.items():
            if not st.tiered or st.error:
                over[k] = 'was not measured (%s)' % (
                    st.error or 'interval cut short')
                unmeasured = True
            elif st.dram_mb > st.budget_mb + slack:
                over[k] = 'holds %d MiB over a budget of %d MiB' % (
                    st.dram_mb, st.budget_mb)
        for r in counted:
            r.over_budget = over
            r.short_mb = short_mb
            if not over and not short_mb:
                if r.settled_in is None:
                    r.settled_in = self.number
                    LOG.info('reservation %s: room made in interval %d',
                             r.describe(), self.number)
                r.finish('settled')
                continue
            r.unmeasured = r.unmeasured + 1 if unmeasured else 0
            if r.unmeasured >= UNMEASURED_INTERVALS and \
                    not r.answered.is_set():
                LOG.info('reservation %s: answered without room, guests '
                         'were not measured in %d intervals in a row',
                         r.describe(), r.unmeasured)
                r.finish('unmeasured')

    def reserve_dram(self, instance_uuid, mb, timeout):
        """Make room in DRAM for ``mb`` MiB of a guest about to start; see
        ``loki_nova.memtier.rpc`` for the answer."""
        from loki_nova.memtier import rpc
        try:
            instance_uuid = str(uuid_mod.UUID(str(instance_uuid)))
        except ValueError:
            return _answer(rpc.INVALID, 'instance_uuid %r is not a UUID'
                           % (instance_uuid,), instance_uuid, mb)
        if isinstance(mb, bool) or not isinstance(mb, int) or mb <= 0:
            return _answer(rpc.INVALID, 'mb must be a whole number of MiB '
                           'above 0, got %r' % (mb,), instance_uuid, mb)
        if isinstance(timeout, bool) or \
                not isinstance(timeout, (int, float)) or \
                not 0 < timeout <= 3600:
            return _answer(rpc.INVALID, 'timeout must be a number of '
                           'seconds above 0 and at most 3600, got %r'
                           % (timeout,), instance_uuid, mb)
        started = time.monotonic()
        capacity = self.topology.fast_mb
        with self._lock:
            if instance_uuid in self._floors:
                return _answer(rpc.OK, 'the guest is already managed; its '
                               'floor of %d MiB is held'
                               % self._floors[instance_uuid],
                               instance_uuid, mb)
            # The floors the loop last published; it admits the
            # reservation again against the floors of its next interval.
            others = sum(r.mb for u, r in self.reservations.items()
                         if u != instance_uuid)
            floors = sum(self._floors.values())
            need = floors + self.conf.dram_reserve_mb + others + mb
            if need > capacity:
                return _answer(
                    rpc.INSUFFICIENT, 'DRAM floors of %d MiB, host reserve '
                    '%d MiB and other reservations of %d MiB leave %d MiB of '
                    'the %d MiB fast tier, less than %d MiB; nothing was '
                    'reserved' % (floors, self.conf.dram_reserve_mb,
                                  others, max(0, capacity - need + mb),
                                  capacity, mb), instance_uuid, mb)
            r = Reservation(instance_uuid, mb, self.conf.reservation_ttl)
            old = self.reservations.get(instance_uuid)
            self.reservations[instance_uuid] = r
        if old is not None:
            old.finish('replaced')
        LOG.info('reservation %s made; pulling on-demand guests toward '
                 'their floors', r.describe())
        self.wake.set()
        deadline = started + timeout
        stuck = None
        while not r.answered.is_set():
            now = time.monotonic()
            stuck = self._stuck()
            if stuck or now >= deadline:
                break
            # Look again when the step in progress (or one starting now)
            # would count as hung.
            step = self._step
            since = step[2] if step is not None else now
            until = min(deadline, since + self._stuck_after_s() + 0.01)
            r.answered.wait(max(0.0, until - now))
        return self._reservation_answer(r, time.monotonic() - started, stuck)

    def _stuck_after_s(self):
        return STUCK_INTERVALS * self.conf.interval

    def _stuck(self):
        """What the loop has been doing for longer than a step may take
        (``STUCK_INTERVALS`` intervals), or None."""
        step = self._step
        if step is None:
            return None
        number, activity, since = step
        age = time.monotonic() - since
        if age < self._stuck_after_s():
            return None
        return 'interval %d has been %s for %.1f s' % (number, activity, age)

    def _reservation_answer(self, r, waited, stuck=None):
        from loki_nova.memtier import rpc
        outcome = r.outcome
        args = (r.instance_uuid, r.mb, waited, r.intervals,
                self._free_fast_mb())
        if outcome == 'settled':
            return _answer(rpc.OK, 'room made in interval %d, the %s that '
                           'counted the reservation'
                           % (r.settled_in, _ordinal(r.intervals)), *args)
        if outcome == 'taken':
            return _answer(rpc.OK, 'the guest appeared while room was being '
                           'made', *args)
        if outcome == 'refused':
            return _answer(rpc.INSUFFICIENT, r.detail, *args)
        if outcome == 'released':
            return _answer(rpc.RELEASED, 'released by release_dram before '
                           'room was made; nothing is held', *args)
        if outcome == 'expired':
            return _answer(rpc.TIMEOUT, 'no guest with this uuid appeared in '
                           '%d s (reservation_ttl) and no room was made; the '
                           'reservation expired and nothing is held'
                           % self.conf.reservation_ttl, *args)
        if outcome == 'replaced':
            return _answer(rpc.TIMEOUT, 'a newer reserve_dram for the same '
                           'instance replaced this one before room was '
                           'made', *args)
        why = ', '.join('%s %s' % kv for kv in sorted(r.over_budget.items()))
        if r.short_mb:
            why = ', '.join(filter(None, [
                'the floors of running guests leave %d MiB too little for '
                'the pending reservations' % r.short_mb, why]))
        if stuck:
            why = ', '.join(filter(None, [stuck, why]))
        if not why:
            why = 'no interval has counted the reservation yet'
        if outcome == 'unmeasured':
            head = 'no room confirmed in %d interval(s) in a row with a ' \
                'guest not measured' % r.unmeasured
        else:
            head = 'no room after %.1f s (%d interval(s))' % (
                waited, r.intervals)
        return _answer(rpc.TIMEOUT, '%s: %s; the reservation stays until the '
                       'guest appears, release_dram releases it or for %d s'
                       % (head, why, self.conf.reservation_ttl), *args)

    def release_dram(self, instance_uuid):
        """Drop the reservation held for ``instance_uuid`` (its spawn
        failed or went to another host).  Idempotent: releasing what is
        not held answers ``unknown``."""
        from loki_nova.memtier import rpc
        try:
            instance_uuid = str(uuid_mod.UUID(str(instance_uuid)))
        except ValueError:
            return {'status': rpc.INVALID, 'reason': 'instance_uuid %r is '
                    'not a UUID' % (instance_uuid,),
                    'instance_uuid': instance_uuid, 'mb': 0}
        with self._lock:
            r = self.reservations.pop(instance_uuid, None)
            waiting = bool(self.reservations)
        if r is None:
            return {'status': rpc.UNKNOWN, 'instance_uuid': instance_uuid,
                    'mb': 0, 'reason': 'no reservation is held for this '
                    'instance (none was made, or its guest appeared, or it '
                    'was released or expired)'}
        r.finish('released')
        LOG.info('reservation %s released; its DRAM goes back to on-demand '
                 'guests', r.describe())
        if waiting:
            # other reservations may fit now
            self.wake.set()
        return {'status': rpc.RELEASED, 'instance_uuid': instance_uuid,
                'mb': r.mb, 'reason': 'the reservation of %d MiB was '
                'dropped' % r.mb}

    def _free_fast_mb(self):
        """MemFree of the fast tier's nodes, as the kernel counts it."""
        return self._free_mb(self.topology.fast_nodes)

    def _available_fast_mb(self):
        """What the fast tier's nodes have available for guests
        (``AVAILABLE_FIELDS``)."""
        return self._free_mb(self.topology.fast_nodes, AVAILABLE_FIELDS)

    def _free_mb(self, nodes, fields=('MemFree',)):
        """The sum of ``fields`` of ``nodes``' meminfo in MiB, as the
        kernel counts them; None when a node's meminfo cannot be read."""
        total_kb = 0
        try:
            for node in nodes:
                info = self.kfs.read_node_meminfo(
                    '%s/node%d/meminfo' % (topology_mod.NODE_DIR, node.id))
                total_kb += sum(info.get(f, 0) for f in fields)
        except (OSError, kernfs_mod.KernelFSError):
            return None
        return total_kb // 1024

    def guest_stats(self, instance_uuid):
        from loki_nova.memtier import rpc
        key = str(instance_uuid)
        m = self.guests.get(key)
        report = self.last_report
        if m is None:
            raise rpc.GuestNotManaged(
                'instance %s is not a tiered guest of this host' % key)
        st = report.guests.get(key) if report else None
        return _guest_dict(m, st, report)

    def guest_heat(self, instance_uuid):
        """The guest's heat over its recent intervals, for heat maps: one
        row per interval (oldest first) of at most ``HEAT_BINS`` columns,
        each the highest heat of the chunks it stands for, and the per
        cent of those chunks in DRAM."""
        from loki_nova.memtier import rpc
        key = str(instance_uuid)
        m = self.guests.get(key)
        if m is None:
            raise rpc.GuestNotManaged(
                'instance %s is not a tiered guest of this host' % key)
        rows = list(m.heat_history)
        return {'instance_uuid': key, 'chunks': len(m.layout),
                'chunk_kb': self.chunk_size // 1024,
                'interval_s': self.conf.interval,
                'heat_max': int(classifier.HEAT_MAX),
                'hot_heat': int(self.params.unit),
                'intervals': [r[0] for r in rows],
                'heat': [r[1].tolist() for r in rows],
                'dram_percent': [r[2].tolist() for r in rows]}

    def host_stats(self):
        report = self.last_report
        with self._lock:
            reservations = [{'instance_uuid': r.instance_uuid, 'mb': r.mb,
                             'age_s': round(time.monotonic() - r.made, 1)}
                            for r in self.reservations.values()]
        tiers = []
        for rank in self.topology.ranks:
            nodes = [n for n in self.topology.nodes if n.rank == rank]
            tiers.append({'rank': rank, 'nodes': [n.id for n in nodes],
                          'capacity_mb': sum(n.total_mb for n in nodes),
                          'free_mb': self._free_mb(nodes)})
        return {
            'tiers': tiers,
            'fast_free_mb': self._free_fast_mb(),
            # What on-demand guests may grow into, with dram_free_min_mb.
            'fast_available_mb': self._available_fast_mb(),
            'dram_reserve_mb': self.conf.dram_reserve_mb,
            'dram_free_min_mb': self.conf.dram_free_min_mb,
            # On-demand guests are held below their wishes because the
            # DRAM nodes have too little available (dram_free_min_mb).
            'held_back_by_free_dram': self._free_limited,
            'interval_s': self.conf.interval,
            'interval': self.number,
            'last_interval_wall_s': report and round(report.wall_s, 3),
            'last_interval_ended': report and report.ended,
            'reservations': reservations,
            'guests': [_guest_dict(m, report.guests.get(k) if report
                                   else None, report)
                       for k, m in sorted(self.guests.items())],
        }

    def close(self):
        try:
            self.tracker.close()
        except Exception:
            LOG.exception('closing the %s tracker failed', self.tracker.name)
        for m in self.guests.values():
            guest_mod.release(m.guest)


def _ordinal(n):
    return {1: 'first', 2: 'second', 3: 'third'}.get(n, '%dth' % n)


def _answer(status, reason, instance_uuid, mb, waited=0.0, intervals=0,
            fast_free_mb=None):
    return {'status': status, 'reason': reason,
            'instance_uuid': instance_uuid, 'mb': mb,
            'waited_s': round(waited, 3), 'intervals': intervals,
            'fast_free_mb': fast_free_mb}


def _guest_dict(m, st, report):
    g = m.guest
    out = {'instance_uuid': g.key, 'source': g.source,
           'policy': g.policy.policy, 'floor_mb': g.policy.floor_mb,
           'ceiling_mb': g.policy.ceiling_mb, 'pid': g.identity.pid,
           'ram_mb': g.ram_bytes // MiB, 'interval': None}
    if st is not None:
        out.update(interval=report.number,
                   **{f: round(getattr(st, f), 1) for f in (
                       'budget_mb', 'dram_mb', 'slow_mb', 'hot_mb',
                       'promoted_mb', 'demoted_mb')},
                   failed_pages=st.failed_pages, error=st.error)
    return out
