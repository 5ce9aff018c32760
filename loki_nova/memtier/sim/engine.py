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

"""The simulation loop and its results.

One ``Host`` holds one or more guests, each with its own trace and DRAM
policy; every placement policy runs over the same accesses and the same
samples, interval by interval.  A guest's trace is synthetic
(``traces.TRACE_NAMES``; its samples come from the ``sampler`` model) or a
recording of a real process (``trace_file``, see ``tracefile``: its
accesses and the DAMON tracker's samples both come from the recording).
Metrics:

* DRAM hit ratio -- the share of accesses that found their chunk in DRAM,
  per interval and over the measured intervals (after ``warmup``, which
  covers the initial convergence from first-touch placement);
* ``ratio_to_oracle`` -- hit ratio over the oracle's;
* bytes migrated;
* modelled cost: ``amat_ratio`` = average memory access time over the
  all-DRAM time, from the tier latencies; ``slowdown`` = 1 +
  ``stall_fraction`` * (amat_ratio - 1), for a workload that spends
  ``stall_fraction`` of its all-DRAM run time waiting on memory.
"""

import dataclasses
import os
import typing

import numpy as np

from loki_nova.memtier import agent
from loki_nova.memtier import classifier
from loki_nova.memtier.policy import arbiter
from loki_nova.memtier.policy import planner as planner_mod
from loki_nova.memtier.sim import hindsight as hindsight_mod
from loki_nova.memtier.sim import policies as policies_mod
from loki_nova.memtier.sim import sampler as sampler_mod
from loki_nova.memtier.sim import tracefile
from loki_nova.memtier.sim import traces as traces_mod
from loki_nova.memtier import trackers
from loki_nova.memtier.trackers import damon

MiB = planner_mod.MiB


@dataclasses.dataclass
class GuestSpec:
    """A simulated guest: its size, trace and DRAM policy.

    ``floor`` and ``ceiling`` are fractions of the guest's memory.  With
    ``trace_file`` (a ``loki-memtier record`` recording) the trace is that
    recording, ``trace`` becomes ``file:NAME`` and the size is the
    recording's footprint (``memory_mb`` is then ignored and filled in by
    the simulation).
    """

    name: str
    memory_mb: int
    trace: str = 'zipf'
    policy: str = arbiter.STATIC
    floor: float = 0.25
    ceiling: float = None
    alpha: float = 0.99
    trace_file: str = None

    def __post_init__(self):
        if self.trace_file is not None:
            self.trace = 'file:' + os.path.basename(self.trace_file)
        elif self.trace not in traces_mod.TRACE_NAMES:
            raise ValueError('guest %s: unknown trace %r; valid traces: %s'
                             % (self.name, self.trace,
                                ', '.join(traces_mod.TRACE_NAMES)))
        if self.policy not in arbiter.POLICIES:
            raise ValueError('guest %s: policy must be one of %s, got %r'
                             % (self.name, ', '.join(arbiter.POLICIES),
                                self.policy))
        if not 0 <= self.floor <= 1:
            raise ValueError('guest %s: floor must be a fraction in [0, 1],'
                             ' got %r' % (self.name, self.floor))
        if self.policy == arbiter.ON_DEMAND:
            if self.ceiling is None or not self.floor <= self.ceiling <= 1:
                raise ValueError('guest %s: an on_demand guest needs a '
                                 'ceiling in [floor, 1], got %r'
                                 % (self.name, self.ceiling))
        if not self.alpha > 0:
            raise ValueError('guest %s: alpha must be > 0, got %r'
                             % (self.name, self.alpha))


@dataclasses.dataclass
class SimConfig:
    intervals: int = 100
    warmup: int = 20
    chunk_size: int = 2 * MiB
    dram_share: float = 0.25
    interval_s: float = 5.0
    move_mb_per_s: float = 256.0
    #: Synthetic traces: checks per tracker read, each of
    #: ``1 / samples`` of the interval, for a tracker window of 1 (or any
    #: N: a simplified tracker that reads once per interval); with
    #: ``'interval'`` a check every ``sample_us`` over the whole
    #: interval, as DAMON's trace (see ``_start``; unset, the agent's,
    #: ``damon.default_sample_us``, filled in).
    samples: int = 20
    sample_us: typing.Optional[int] = None
    detection: float = 0.9
    accesses_per_chunk: float = 8.0
    fast_ns: float = 81.0
    slow_ns: float = 305.0
    stall_fraction: float = 0.3
    seed: int = 1
    #: How recorded DAMON regions become the samples policies observe
    #: (``trackers.damon.CHUNK_RULES``; synthetic traces ignore it).
    chunk_rule: str = damon.DEFAULT_CHUNK_RULE
    #: How many of a recorded interval's DAMON snapshots one read of the
    #: tracker covers, back from the interval's end (``tracefile.
    #: RecordedTrace``): 1 is the recording's own aggregation interval,
    #: ``'interval'`` one as long as the interval (synthetic traces
    #: ignore it).
    tracker_window: object = 1
    #: The scale of the samples policies observe: by default that of the
    #: tracker the window stands for -- DAMON's trace
    #: (``damon.TRACE_SCALE``) for ``'interval'``, the common
    #: ``trackers.SAMPLE_SCALE`` otherwise (``window_scale``).  Synthetic
    #: samples count units of the common scale and are spread onto it.
    #: ``default_params`` gives loki the agent's parameters for it.
    sample_scale: typing.Optional[int] = None

    def __post_init__(self):
        self.tracker_window = tracefile.check_window(self.tracker_window)
        if self.sample_scale is None:
            self.sample_scale = window_scale(self.tracker_window)
        if not isinstance(self.sample_scale, int) or \
                not trackers.SAMPLE_SCALE <= self.sample_scale <= 255 or \
                self.sample_scale % trackers.SAMPLE_SCALE:
            raise ValueError('sample_scale must be a multiple of %d up to '
                             '255, got %r' % (trackers.SAMPLE_SCALE,
                                              self.sample_scale))
        if self.sample_us is not None and (
                not isinstance(self.sample_us, int) or self.sample_us < 1):
            raise ValueError('sample_us must be a whole number of '
                             'microseconds >= 1, got %r' % (self.sample_us,))
        if self.sample_us is None and \
                self.tracker_window == tracefile.WINDOW_INTERVAL:
            self.sample_us = damon.default_sample_us('trace',
                                                     self.interval_s)
        if self.chunk_rule not in damon.CHUNK_RULES:
            raise ValueError('chunk_rule must be one of %s, got %r'
                             % (', '.join(damon.CHUNK_RULES),
                                self.chunk_rule))
        if not 0 < self.dram_share <= 1:
            raise ValueError('dram_share must be in (0, 1], got %r'
                             % self.dram_share)
        if self.intervals < 1 or not 0 <= self.warmup < self.intervals:
            raise ValueError('intervals must be >= 1 and warmup in [0, '
                             'intervals), got %r and %r'
                             % (self.intervals, self.warmup))
        if self.chunk_size not in planner_mod.CHUNK_SIZES:
            raise ValueError('chunk size must be 4 KiB or 2 MiB, got %r '
                             'bytes' % self.chunk_size)
        if not 0 < self.fast_ns <= self.slow_ns:
            raise ValueError('tier latencies must satisfy 0 < fast <= slow, '
                             'got %r and %r' % (self.fast_ns, self.slow_ns))
        if not 0 <= self.stall_fraction <= 1:
            raise ValueError('stall_fraction must be in [0, 1], got %r'
                             % self.stall_fraction)
        if self.move_mb_per_s < 0 or self.interval_s <= 0:
            raise ValueError('move rate must be >= 0 and interval > 0')


class Host:
    """The guests laid end to end, the host's DRAM and move cap."""

    def __init__(self, guests, config, rng):
        if not guests:
            raise ValueError('at least one guest is needed')
        self.config = config
        self.chunk_size = config.chunk_size
        self.interval_s = config.interval_s
        self.move_bytes_per_s = config.move_mb_per_s * MiB
        self.guests = []
        self.guest_slices = []
        self.traces = []
        #: The guests' specs, with the recorded ones' sizes filled in.
        self.specs = []
        start = 0
        for spec in guests:
            if spec.trace_file is not None:
                trace = tracefile.RecordedTrace(
                    spec.trace_file, config.chunk_size, config.chunk_rule,
                    config.tracker_window, config.sample_scale)
                if config.intervals > trace.intervals:
                    raise ValueError(
                        'guest %s: %s holds %d intervals, fewer than the '
                        '%d to simulate' % (spec.name, spec.trace_file,
                                            trace.intervals,
                                            config.intervals))
                chunks = trace.chunks
                spec = dataclasses.replace(
                    spec, memory_mb=chunks * config.chunk_size // MiB)
            else:
                chunks = spec.memory_mb * MiB // config.chunk_size
                if chunks < 1:
                    raise ValueError('guest %s: memory_mb %d is smaller '
                                     'than one chunk'
                                     % (spec.name, spec.memory_mb))
                trace = traces_mod.make_trace(
                    spec.trace, chunks, rng, alpha=spec.alpha,
                    intervals=config.intervals,
                    accesses_per_chunk=config.accesses_per_chunk)
            guest = _Guest(spec, chunks, config.chunk_size)
            self.specs.append(spec)
            self.guests.append(guest)
            self.guest_slices.append(slice(start, start + chunks))
            self.traces.append(trace)
            start += chunks
        self.chunks = start
        self.dram_chunks = int(self.chunks * config.dram_share)
        # In MiB as the arbiter counts, rounded down from the exact share
        # (not from whole chunks): a guest's floor of the same share then
        # fits, and budgets in MiB never add up to more chunks than
        # dram_chunks.
        self.dram_mb = int(self.chunks * self.chunk_size * config.dram_share
                           // MiB)
        self.cap_chunks = int(self.move_bytes_per_s * self.interval_s
                              // self.chunk_size)

    def accesses(self, interval):
        return np.concatenate([trace.accesses(interval)
                               for trace in self.traces])

    def draw(self, interval, sampler):
        """The interval's true accesses, the samples policies observe and
        the chunks touched (allocated if new)."""
        accesses = self.accesses(interval)
        recorded = [isinstance(t, tracefile.RecordedTrace)
                    for t in self.traces]
        if all(recorded):
            sampled = np.zeros(self.chunks, dtype=np.uint8)
        else:
            sampled = sampler.sample(accesses)
        touched = accesses > 0
        for trace, part, is_recorded in zip(self.traces, self.guest_slices,
                                            recorded):
            if is_recorded:
                sampled[part] = trace.samples(interval)
                if interval == 0:
                    touched[part] |= trace.initial
        return accesses, sampled, touched


class _Guest:
    def __init__(self, spec, chunks, chunk_size):
        self.name = spec.name
        self.policy = spec.policy
        self.chunks = chunks
        memory_mb = chunks * chunk_size // MiB
        self.memory_mb = memory_mb
        self.floor_mb = int(memory_mb * spec.floor)
        self.ceiling_mb = (int(memory_mb * spec.ceiling)
                           if spec.ceiling is not None else None)


@dataclasses.dataclass
class PolicyResult:
    name: str
    hit_per_interval: list
    hit_ratio: float
    migrated_bytes: int
    amat_ratio: float
    slowdown: float
    ratio_to_oracle: float = None
    guest_hit_ratio: dict = None


@dataclasses.dataclass
class SimResult:
    config: SimConfig
    guests: list
    policies: list
    shift_at: int = None
    adaptation_intervals: int = None
    budgets_mb: dict = None
    #: For a replay of recordings only, with static-best among the
    #: policies: ``sim.hindsight``'s references over the host's chunks.
    hindsight: dict = None

    def policy(self, name):
        return next(p for p in self.policies if p.name == name)


def _start(guests, config):
    """A host and the sampler over one random stream seeded from
    ``config``: two starts draw the very same accesses and samples."""
    rng = np.random.default_rng(config.seed)
    host = Host(guests, config, rng)
    if config.tracker_window == tracefile.WINDOW_INTERVAL:
        # DAMON's trace read every interval: every check of the interval,
        # each looking back over one sampling interval, on the trace's
        # scale.
        checks = max(1, round(config.interval_s * 1e6 / config.sample_us))
        sampler = sampler_mod.AccessSampler(
            rng, checks, config.detection, check_share=1.0 / checks,
            scale=config.sample_scale)
    else:
        sampler = sampler_mod.AccessSampler(rng, config.samples,
                                            config.detection,
                                            scale=config.sample_scale)
    return host, sampler


def hindsight_totals(guests, config):
    """Each chunk's accesses summed over all ``config.intervals``, from a
    dry run of the same draws (what ``static-best`` knows in advance)."""
    host, sampler = _start(guests, config)
    totals = np.zeros(host.chunks, dtype=np.float64)
    for interval in range(config.intervals):
        totals += host.draw(interval, sampler)[0]
    return totals


def window_scale(window):
    """The sample scale of the tracker a tracker window stands for: DAMON's
    trace for the whole interval, the common scale otherwise."""
    if window == tracefile.WINDOW_INTERVAL:
        return damon.TRACE_SCALE
    return trackers.SAMPLE_SCALE


def default_params(config, hysteresis=None):
    """loki's parameters as the agent sets them for the tracker
    ``config`` stands for: the classifier's defaults per sampled access on
    the common scale, spread over ``config.sample_scale``, and the
    hysteresis for that tracker's view (the agent's with DAMON's trace
    when each read sees the whole interval) unless ``hysteresis`` is
    given."""
    base = classifier.ClassifierParams()
    if hysteresis is None:
        hysteresis = (agent.WHOLE_INTERVAL_HYSTERESIS
                      if config.tracker_window == tracefile.WINDOW_INTERVAL
                      else base.hysteresis)
    weight, unit = trackers.heat_weights(base.access_weight,
                                         config.sample_scale)
    return classifier.ClassifierParams(
        decay_shift=base.decay_shift, access_weight=weight,
        hysteresis=hysteresis, fill_min=base.fill_min, unit_heat=unit)


def run(guests, config=None, policy_names=policies_mod.POLICY_NAMES,
        params=None, progress=None):
    """Simulate ``guests`` (``GuestSpec`` list) under every policy; loki
    with ``params``, by default ``default_params(config)``."""
    config = config or SimConfig()
    if params is None:
        params = default_params(config)
    totals = (hindsight_totals(guests, config)
              if 'static-best' in policy_names else None)
    host, sampler = _start(guests, config)
    policies = policies_mod.make_policies(
        host, np.random.default_rng(config.seed + 1), params, policy_names,
        totals)
    hits = {p.name: [] for p in policies}
    guest_hits = {p.name: np.zeros((len(host.guests), 2)) for p in policies}
    budgets = {g.name: [] for g in host.guests}
    # What static-best knows, to say how much of it a policy could reach
    # (sim.hindsight): kept for replays of recordings, which are small.
    seen = ([], []) if totals is not None and all(
        isinstance(t, tracefile.RecordedTrace) for t in host.traces) \
        else None
    for interval in range(config.intervals):
        accesses, sampled, touched = host.draw(interval, sampler)
        if seen is not None:
            seen[0].append(accesses)
            seen[1].append(sampled.copy())
        total = float(accesses.sum()) or 1.0
        for policy in policies:
            policy.allocate(touched)
            in_dram = policy.placement(interval, accesses) == \
                policies_mod.FAST
            fast_hits = np.where(in_dram, accesses, 0)
            hits[policy.name].append(float(fast_hits.sum()) / total)
            if interval >= config.warmup:
                for g, part in enumerate(host.guest_slices):
                    guest_hits[policy.name][g] += (fast_hits[part].sum(),
                                                   accesses[part].sum())
            policy.observe(interval, sampled)
            _check_dram(policy, host)
            if policy.budgets_mb is not None:
                for g, guest in enumerate(host.guests):
                    budgets[guest.name].append(policy.budgets_mb[g])
        if progress:
            progress(interval + 1, config.intervals)

    results = []
    for policy in policies:
        per_guest = guest_hits[policy.name]
        hit = float(per_guest[:, 0].sum() / max(per_guest[:, 1].sum(), 1))
        amat = (hit * config.fast_ns + (1 - hit) * config.slow_ns) \
            / config.fast_ns
        results.append(PolicyResult(
            name=policy.name,
            hit_per_interval=hits[policy.name],
            hit_ratio=hit,
            migrated_bytes=int(policy.moved_chunks * host.chunk_size),
            amat_ratio=amat,
            slowdown=1 + config.stall_fraction * (amat - 1),
            guest_hit_ratio={
                g.name: float(per_guest[i, 0] / max(per_guest[i, 1], 1))
                for i, g in enumerate(host.guests)}))
    oracle = next((r for r in results if r.name == 'oracle'), None)
    if oracle is not None and oracle.hit_ratio > 0:
        for result in results:
            result.ratio_to_oracle = result.hit_ratio / oracle.hit_ratio

    sim = SimResult(config=config, guests=host.specs, policies=results,
                    budgets_mb=budgets)
    if seen is not None and config.intervals >= 2:
        sim.hindsight = hindsight_mod.references(
            seen[0], seen[1], config.warmup, host.dram_chunks)
    shifts = [getattr(t, 'shift_at', None) for t in host.traces]
    shift_at = next((s for s in shifts if s is not None), None)
    if shift_at is not None and oracle is not None and \
            any(r.name == 'loki' for r in results):
        sim.shift_at = shift_at
        sim.adaptation_intervals = adaptation_intervals(
            sim.policy('loki').hit_per_interval, oracle.hit_per_interval,
            shift_at)
    return sim


def _check_dram(policy, host):
    fast = int(np.count_nonzero(policy.tier == policies_mod.FAST))
    if fast > host.dram_chunks:
        raise RuntimeError('policy %s holds %d chunks in DRAM, more than '
                           'the host\'s %d' % (policy.name, fast,
                                               host.dram_chunks))


def adaptation_intervals(hits, oracle_hits, shift_at, target=0.9):
    """Intervals after ``shift_at`` until ``hits`` first reaches ``target``
    of the oracle's (None if never)."""
    for offset, interval in enumerate(range(shift_at, len(hits))):
        if oracle_hits[interval] > 0 and \
                hits[interval] >= target * oracle_hits[interval]:
            return offset
    return None
