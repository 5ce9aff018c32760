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

"""Traces, the sampler model and the simulation engine."""

import types

import numpy as np
import pytest

from loki_nova.memtier.sim import engine
from loki_nova.memtier.sim import policies
from loki_nova.memtier.sim import sampler
from loki_nova.memtier.sim import traces
from loki_nova.memtier import trackers
from loki_nova.memtier.trackers import damon

SMALL = engine.SimConfig(intervals=40, warmup=10)


@pytest.mark.parametrize('name', traces.TRACE_NAMES)
def test_traces_give_nonnegative_rates_of_the_right_total(name):
    rng = np.random.default_rng(3)
    trace = traces.make_trace(name, 1000, rng, intervals=10)
    for interval in (0, 5, 9):
        rates = trace.rates(interval)
        assert rates.shape == (1000,) and (rates >= 0).all()
        assert rates.sum() == pytest.approx(trace.total_rate)
        assert trace.accesses(interval).dtype.kind == 'i'


def test_zipf_is_skewed_and_scattered():
    trace = traces.ZipfTrace(10000, np.random.default_rng(1), alpha=0.99)
    rates = trace.rates(0)
    top = np.sort(rates)[::-1]
    assert top[:2500].sum() / top.sum() > 0.8
    # Scattered: the hottest chunk is not simply chunk 0.
    assert np.argmax(rates) != 0


def test_hot_set_moves_to_cold_chunks():
    trace = traces.HotSetTrace(1000, np.random.default_rng(1), shift_at=5)
    before, after = set(trace.hot_set(4)), set(trace.hot_set(5))
    assert len(before) == len(after) == 100 and not before & after
    assert trace.rates(5)[list(after)].min() > trace.rates(5).mean()


@pytest.mark.parametrize('kwargs, match', [
    (dict(name='nope'), 'unknown trace'),
    (dict(name='zipf', alpha=0), 'alpha must be > 0'),
])
def test_bad_trace_arguments(kwargs, match):
    name = kwargs.pop('name')
    with pytest.raises(ValueError, match=match):
        traces.make_trace(name, 100, np.random.default_rng(0), **kwargs)


def test_sampler_saturates_for_hot_and_rarely_sees_cold_chunks():
    model = sampler.AccessSampler(np.random.default_rng(0), samples=20,
                                  detection=1.0)
    seen = model.sample(np.array([0] * 1000 + [1000] * 1000))
    assert seen.dtype == np.uint8
    assert seen[:1000].max() == 0
    assert seen[1000:].min() == 20


def test_sampler_on_a_scale_counts_any_check_at_least_one_unit():
    """Many short checks reported on a coarser scale (DAMON's trace read
    over an interval): a share of the checks, rounded up."""
    model = sampler.AccessSampler(np.random.default_rng(0), samples=1000,
                                  detection=1.0, check_share=1 / 1000,
                                  scale=160)
    seen = model.sample(np.array([0] * 500 + [3] * 500 + [10 ** 6] * 500))
    assert seen.dtype == np.uint8
    assert seen[:500].max() == 0
    # Found in 1-6 of 1000 checks: 1 unit of 160 -- what makes 5 ms
    # checks too fine for the trace's scale.
    assert seen[500:1000].max() <= 2
    assert (seen[500:1000] == 1).mean() > 0.9
    assert seen[1000:].min() == 160
    # Checks as many as the scale: each one found counts one unit.
    fitted = sampler.AccessSampler(np.random.default_rng(0), samples=160,
                                   detection=1.0, check_share=1 / 160,
                                   scale=160)
    counts = fitted.sample(np.full(2000, 3))
    assert counts.max() >= 5 and counts.mean() == pytest.approx(
        160 * -np.expm1(-3 / 160), rel=0.1)


def test_synthetic_samples_follow_the_tracker_window():
    """Window 1: the idealised single read, 20 checks on 0-20; the whole
    interval: DAMON's trace as the agent reads it by default."""
    one = engine.SimConfig()
    _, model = engine._start([engine.GuestSpec('g', 64, 'zipf')], one)
    assert (model.samples, model.scale) == (20, trackers.SAMPLE_SCALE)
    whole = engine.SimConfig(tracker_window='interval')
    _, model = engine._start([engine.GuestSpec('g', 64, 'zipf')], whole)
    assert model.samples == damon.TRACE_SCALE == model.scale
    assert model.check_share == pytest.approx(1 / damon.TRACE_SCALE)
    # A configured sampling interval: 5 ms over 5 s, 1000 checks.
    fine = engine.SimConfig(tracker_window='interval', sample_us=5000)
    _, model = engine._start([engine.GuestSpec('g', 64, 'zipf')], fine)
    assert (model.samples, model.scale) == (1000, damon.TRACE_SCALE)


@pytest.mark.parametrize('kwargs', [dict(samples=0), dict(detection=0),
                                    dict(detection=1.5), dict(samples=2.5),
                                    dict(check_share=0),
                                    dict(check_share=1.5), dict(scale=0),
                                    dict(scale=256)])
def test_sampler_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        sampler.AccessSampler(np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize('chunk_kb', [4, 2048])
def test_loki_beats_every_baseline_on_zipf(chunk_kb):
    memory_mb = 64 if chunk_kb == 4 else 8192
    config = engine.SimConfig(intervals=40, warmup=10,
                              chunk_size=chunk_kb * 1024,
                              move_mb_per_s=4 if chunk_kb == 4 else 256)
    result = engine.run([engine.GuestSpec('g', memory_mb, 'zipf')], config)
    loki = result.policy('loki')
    for other in ('first-touch', 'kernel-like', 'recency'):
        assert loki.hit_ratio > result.policy(other).hit_ratio, other
    assert 0.9 < loki.ratio_to_oracle <= 1.0


def test_oracle_bounds_every_policy_in_every_interval():
    result = engine.run([engine.GuestSpec('g', 4096, 'phases')], SMALL)
    oracle = result.policy('oracle').hit_per_interval
    for policy in result.policies:
        assert all(h <= o + 1e-12
                   for h, o in zip(policy.hit_per_interval, oracle))


def test_no_tiering_never_migrates_and_everyone_else_respects_the_cap():
    result = engine.run([engine.GuestSpec('g', 4096, 'hotset')], SMALL)
    assert result.policy('first-touch').migrated_bytes == 0
    cap_bytes = SMALL.move_mb_per_s * 2 ** 20 * SMALL.interval_s
    for name in ('loki', 'kernel-like', 'recency'):
        assert 0 < result.policy(name).migrated_bytes \
            <= cap_bytes * SMALL.intervals


def test_hot_set_shift_is_reported_with_adaptation():
    result = engine.run([engine.GuestSpec('g', 4096, 'hotset')], SMALL)
    assert result.shift_at == 20
    assert result.adaptation_intervals is not None


def test_on_demand_guest_grows_past_its_floor_when_dram_is_free():
    guests = [engine.GuestSpec('static', 4096, 'uniform', floor=0.1),
              engine.GuestSpec('elastic', 4096, 'zipf', policy='on_demand',
                               floor=0.1, ceiling=0.4)]
    result = engine.run(guests, engine.SimConfig(intervals=30, warmup=5,
                                                 dram_share=0.3))
    budgets = result.budgets_mb
    assert set(budgets['static']) == {409}
    assert min(budgets['elastic']) >= 409
    assert max(budgets['elastic']) > 409
    assert max(budgets['elastic']) <= 1638
    host_dram = int(0.3 * 4096)
    assert all(a + b <= 2 * host_dram for a, b in
               zip(budgets['static'], budgets['elastic']))


@pytest.mark.parametrize('kwargs, match', [
    (dict(dram_share=0), 'dram_share'),
    (dict(dram_share=1.5), 'dram_share'),
    (dict(warmup=100), 'warmup'),
    (dict(chunk_size=8192), 'chunk size'),
    (dict(fast_ns=400), 'latencies'),
])
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        engine.SimConfig(**kwargs)


@pytest.mark.parametrize('kwargs, match', [
    (dict(trace='nope'), 'unknown trace'),
    (dict(policy='on_demand'), 'ceiling'),
    (dict(floor=2), 'floor'),
])
def test_bad_guest_specs_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        engine.GuestSpec('g', 1024, **kwargs)


def _host(chunks, dram_chunks, cap_chunks):
    return types.SimpleNamespace(chunks=chunks, dram_chunks=dram_chunks,
                                 cap_chunks=cap_chunks)


def test_kernel_like_never_promotes_past_what_dram_holds():
    """DRAM full with 10 chunks, 50 slow chunks sampled, a cap of 100
    moves: at most 10 can displace the 10 in DRAM."""
    host = _host(60, 10, 100)
    policy = policies.KernelLike(host, np.random.default_rng(0))
    policy.tier[:10] = policies.FAST
    policy.tier[10:] = policies.SLOW
    policy.observe(0, np.ones(60, dtype=np.uint8))
    fast = np.count_nonzero(policy.tier == policies.FAST)
    assert fast <= host.dram_chunks
    assert fast == 10 and policy.moved_chunks == 20


def test_kernel_like_fills_free_dram_first():
    host = _host(60, 10, 100)
    policy = policies.KernelLike(host, np.random.default_rng(0))
    policy.tier[:4] = policies.FAST
    policy.tier[4:] = policies.SLOW
    policy.observe(0, np.ones(60, dtype=np.uint8))
    assert np.count_nonzero(policy.tier == policies.FAST) == 10


@pytest.mark.parametrize('trace', ['zipf', 'scan', 'hotset'])
def test_no_policy_ever_holds_more_dram_than_the_host(trace):
    # A move cap past the whole footprint: only DRAM limits the policies.
    config = engine.SimConfig(intervals=12, warmup=2, dram_share=0.125,
                              move_mb_per_s=100000)
    result = engine.run([engine.GuestSpec('g', 1024, trace, floor=0.125)],
                        config)
    assert {p.name for p in result.policies} == set(policies.POLICY_NAMES)


def test_the_engine_stops_a_policy_that_overfills_dram():
    class Greedy(policies.Policy):
        name = 'greedy'

        def observe(self, interval, sampled):
            self.tier[self.tier == policies.SLOW] = policies.FAST

    host = _host(8, 2, 100)
    greedy = Greedy(host)
    greedy.allocate(np.ones(8, dtype=bool))
    greedy.observe(0, None)
    with pytest.raises(RuntimeError, match='greedy holds 8 chunks in DRAM, '
                                           "more than the host's 2"):
        engine._check_dram(greedy, host)


def test_previous_interval_holds_the_last_intervals_hottest():
    host = _host(6, 2, 100)
    policy = policies.PreviousInterval(host)
    policy.allocate(np.ones(6, dtype=bool))     # chunks 0, 1 in DRAM
    policy.observe(0, np.array([0, 3, 0, 9, 1, 0], dtype=np.uint8))
    assert np.flatnonzero(policy.tier == policies.FAST).tolist() == [1, 3]


def test_static_best_places_the_hindsight_hottest_and_never_moves():
    host = _host(6, 2, 100)
    policy = policies.StaticBest(host, [5, 0, 9, 1, 0, 7])
    policy.allocate(np.array([1, 1, 1, 0, 0, 0], dtype=bool))
    assert np.flatnonzero(policy.tier == policies.FAST).tolist() == [2]
    policy.allocate(np.ones(6, dtype=bool))
    assert np.flatnonzero(policy.tier == policies.FAST).tolist() == [2, 5]
    policy.observe(0, np.full(6, 20, dtype=np.uint8))
    assert policy.moved_chunks == 0


def test_static_best_knows_the_same_draws_the_run_scores():
    """The hindsight totals come from a dry run of the very same draws."""
    guests = [engine.GuestSpec('g', 2048, 'phases')]
    totals = engine.hindsight_totals(guests, SMALL)
    host, sampler_ = engine._start(guests, SMALL)
    again = sum(host.draw(i, sampler_)[0] for i in range(SMALL.intervals))
    assert np.array_equal(totals, again)
    result = engine.run(guests, SMALL)
    assert result.policy('static-best').migrated_bytes == 0
