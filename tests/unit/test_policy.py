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

"""The host arbiter and the per-guest planner."""

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

from loki_nova.memtier import classifier
from loki_nova.memtier.policy import arbiter
from loki_nova.memtier.policy import planner

MiB = planner.MiB


@st.composite
def guests(draw):
    count = draw(st.integers(0, 8))
    result = []
    for index in range(count):
        floor = draw(st.integers(0, 4096))
        if draw(st.booleans()):
            result.append(arbiter.GuestDemand('g%d' % index, arbiter.STATIC,
                                              floor))
        else:
            ceiling = floor + draw(st.integers(0, 8192))
            hot = draw(st.integers(0, 16384))
            result.append(arbiter.GuestDemand('g%d' % index,
                                              arbiter.ON_DEMAND, floor,
                                              ceiling, hot))
    return result


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(guests=guests(), capacity=st.integers(0, 40000),
                  reserve=st.integers(0, 4096),
                  reserved=st.integers(0, 4096))
def test_arbiter_invariants(guests, capacity, reserve, reserved):
    floors = sum(g.floor_mb for g in guests)
    if floors + reserve > capacity:
        with pytest.raises(arbiter.InsufficientDram, match='short'):
            arbiter.allocate(capacity, reserve, guests, reserved)
        return
    # Reservations hold only what the floors leave: they never cut one.
    reserved = min(reserved, capacity - reserve - floors)
    budgets = arbiter.allocate(capacity, reserve, guests, reserved)
    assert set(budgets) == {g.name for g in guests}
    for guest in guests:
        assert guest.floor_mb <= budgets[guest.name] <= guest.ceiling_mb
        if guest.policy == arbiter.STATIC:
            assert budgets[guest.name] == guest.floor_mb
        # Nobody gets more than its demand asks for.
        assert budgets[guest.name] - guest.floor_mb <= guest.wanted_extra_mb
    assert sum(budgets.values()) <= capacity - reserve - reserved
    spare = capacity - reserve - reserved - floors
    wanted = sum(g.wanted_extra_mb for g in guests)
    # What is spare is handed out, up to what is wanted.
    assert sum(budgets.values()) - floors == min(spare, wanted)
    # Extra DRAM follows hot demand: more demand never means less extra.
    extras = sorted((g.wanted_extra_mb, budgets[g.name] - g.floor_mb)
                    for g in guests if g.policy == arbiter.ON_DEMAND)
    for (_, low), (_, high) in zip(extras, extras[1:]):
        assert low <= high


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(guests=guests(), capacity=st.integers(20000, 40000),
                  pressure=st.lists(st.integers(0, 20000), min_size=2,
                                    max_size=5))
def test_budgets_fall_back_toward_floors_under_pressure(guests, capacity,
                                                        pressure):
    """Growing reservations never raise anyone's budget."""
    previous = None
    for reserved in sorted(pressure):
        try:
            budgets = arbiter.allocate(capacity, 0, guests, reserved)
        except arbiter.InsufficientDram:
            break
        if previous is not None:
            for name, budget in budgets.items():
                assert budget <= previous[name]
        previous = budgets


def test_on_demand_guest_gets_its_demand_when_dram_is_free():
    guests = [arbiter.GuestDemand('s', arbiter.STATIC, 1000),
              arbiter.GuestDemand('d', arbiter.ON_DEMAND, 500, 4000, 3000)]
    assert arbiter.allocate(16000, 1000, guests) == {'s': 1000, 'd': 3000}
    # A reservation of 12500 leaves 1000 above the floors (1500): d, the
    # only guest that wants more, gets all of it.
    assert arbiter.allocate(16000, 1000, guests, reserved_mb=12500) == \
        {'s': 1000, 'd': 1500}


def test_contended_dram_is_shared_by_demand():
    guests = [arbiter.GuestDemand('a', arbiter.ON_DEMAND, 0, 10000, 3000),
              arbiter.GuestDemand('b', arbiter.ON_DEMAND, 0, 10000, 1000)]
    assert arbiter.allocate(2000, 0, guests) == {'a': 1500, 'b': 500}


def test_a_larger_reservation_takes_from_the_shares_never_adds():
    """Wishes of 1, 3 and 3 MiB over 4 spare MiB get 0, 2 and 2; over 3,
    handing the MiB lost to rounding to the largest remainders gave 1, 1
    and 1 -- a guest's budget rose as a reservation grew.  Now one MiB
    less takes one MiB from one guest."""
    guests = [arbiter.GuestDemand(name, arbiter.ON_DEMAND, 0, 10, hot)
              for name, hot in (('a', 1), ('b', 3), ('c', 3))]
    assert arbiter.allocate(10, 0, guests, reserved_mb=6) == \
        {'a': 0, 'b': 2, 'c': 2}
    assert arbiter.allocate(10, 0, guests, reserved_mb=7) == \
        {'a': 0, 'b': 2, 'c': 1}
    assert arbiter.allocate(10, 0, guests, reserved_mb=8) == \
        {'a': 0, 'b': 1, 'c': 1}


def test_floors_that_do_not_fit_are_an_error_not_a_cut():
    guests = [arbiter.GuestDemand('a', arbiter.STATIC, 6000),
              arbiter.GuestDemand('b', arbiter.STATIC, 6000)]
    with pytest.raises(arbiter.InsufficientDram) as info:
        arbiter.allocate(12000, 512, guests)
    assert '512 MiB short' in str(info.value)


def test_a_reservation_yields_to_the_floors_of_running_guests():
    # The reservation was made when only 's' ran; then 'late' started
    # without one.  Floors 1000 + 500 leave 400 of the 2000 MiB over the
    # reserve: the reservation holds those, the floors stay whole.
    guests = [arbiter.GuestDemand('s', arbiter.STATIC, 1000),
              arbiter.GuestDemand('d', arbiter.ON_DEMAND, 0, 900, 900),
              arbiter.GuestDemand('late', arbiter.STATIC, 500)]
    assert arbiter.reservation_room(2000, 100, 1500) == 400
    assert arbiter.allocate(2000, 100, guests, reserved_mb=800) == \
        {'s': 1000, 'd': 0, 'late': 500}
    # What the reservation does not take, the on-demand guest may.
    assert arbiter.allocate(2000, 100, guests, reserved_mb=300) == \
        {'s': 1000, 'd': 100, 'late': 500}


@pytest.mark.parametrize('kwargs, match', [
    (dict(policy='dynamic', floor_mb=1), 'policy must be one of'),
    (dict(policy='on_demand', floor_mb=100), 'ceiling_mb'),
    (dict(policy='on_demand', floor_mb=100, ceiling_mb=50), 'ceiling_mb'),
    (dict(policy='static', floor_mb=-1), 'floor_mb'),
    (dict(policy='static', floor_mb=1, hot_mb=-5), 'hot_mb'),
])
def test_bad_guest_demands_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        arbiter.GuestDemand('vm-1', **kwargs)


def test_duplicate_guest_names_are_rejected():
    guest = arbiter.GuestDemand('vm', arbiter.STATIC, 1)
    with pytest.raises(ValueError, match='unique'):
        arbiter.allocate(100, 0, [guest, guest])


@pytest.mark.parametrize('chunk_size', [4096, 2 * MiB])
def test_planner_converts_budget_and_cap_to_chunks(chunk_size):
    guest = planner.GuestPlanner(16, chunk_size)
    assert guest.budget_chunks(64) == 64 * MiB // chunk_size
    assert guest.cap_chunks(100 * MiB, 0.5) == 50 * MiB // chunk_size


def test_planner_carries_a_fractional_cap_forward():
    guest = planner.GuestPlanner(16, 2 * MiB)
    # 0.5 chunk per interval: nothing, one, nothing, one ...
    caps = [guest.cap_chunks(1 * MiB, 1.0) for _ in range(6)]
    assert caps == [0, 1, 0, 1, 0, 1]


def test_planner_rejects_other_chunk_sizes():
    with pytest.raises(ValueError, match='chunk_size must be one of'):
        planner.GuestPlanner(16, 65536)


@pytest.mark.parametrize('chunk_size', [4096, 2 * MiB])
def test_plan_demotes_first_when_dram_is_tight(chunk_size):
    n = 64
    tier = np.zeros(n, dtype=np.uint8)
    tier[n // 2:] = classifier.TIER_SLOW
    access = np.zeros(n, dtype=np.uint8)
    access[n // 2:] = 20       # the slow half is hot
    guest = planner.GuestPlanner(n, chunk_size)
    budget_mb = (n // 2) * chunk_size / MiB
    plan = guest.plan(access, tier, budget_mb, 10 ** 12, 1.0)
    assert [target for _, target in plan.batches] == \
        [classifier.TIER_SLOW, classifier.TIER_FAST]
    fast = n // 2
    for chunks, target in plan.batches:
        fast += len(chunks) if target == classifier.TIER_FAST \
            else -len(chunks)
        assert fast <= plan.budget_chunks
    planner.apply_plan(tier, plan)
    assert (tier[n // 2:] == classifier.TIER_FAST).all()


def test_plan_promotes_first_into_free_budget():
    n = 32
    tier = np.full(n, classifier.TIER_SLOW, dtype=np.uint8)
    access = np.full(n, 5, dtype=np.uint8)
    guest = planner.GuestPlanner(n, 4096)
    plan = guest.plan(access, tier, n * 4096 / MiB, 10 ** 9, 1.0)
    assert [target for _, target in plan.batches] == [classifier.TIER_FAST]
    assert plan.moves == n


def test_hot_chunks_counts_recently_accessed_chunks():
    guest = planner.GuestPlanner(4, 4096)
    histogram = np.zeros(classifier.HEAT_LEVELS, dtype=np.uint32)
    histogram[[0, 10, 64, 500]] = [5, 3, 2, 1]
    assert guest.hot_chunks(histogram) == 3
    assert guest.hot_chunks(histogram, hot_heat=1) == 6


def _scan_interval(n, window, interval):
    access = np.zeros(n, dtype=np.uint8)
    start = (interval * window) % n
    access[start:start + window] = 20
    return access


def test_moves_that_do_not_pay_are_throttled_and_recover():
    n, window = 256, 32
    # A hysteresis wide enough that the scan's leftovers, cooling in both
    # tiers, are not swapped among themselves once the hot set is in: the
    # test is about the allowance coming back when moves pay.
    guest = planner.GuestPlanner(
        n, 4096, classifier.ClassifierParams(hysteresis=512))
    tier = np.full(n, classifier.TIER_SLOW, dtype=np.uint8)
    tier[:64] = classifier.TIER_FAST
    budget_mb = 64 * 4096 / MiB
    rate = 64 * 4096            # 64 chunks per 1 s interval
    scales, moves = [], []
    # A scan: what was hot last interval is never touched again soon.
    for interval in range(1, 8):
        plan = guest.plan(_scan_interval(n, window, interval), tier,
                          budget_mb, rate, 1.0)
        planner.apply_plan(tier, plan)
        scales.append(guest.move_scale)
        moves.append(plan.moves)
    assert scales[-1] <= 1 / 16
    assert moves[-1] < max(moves[:3])
    # A stable hot set: promotions pay, the allowance comes back.
    stable = np.zeros(n, dtype=np.uint8)
    stable[200:232] = 20
    for _ in range(4):
        plan = guest.plan(stable, tier, budget_mb, rate, 1.0)
        planner.apply_plan(tier, plan)
    assert guest.move_scale == 1.0
    assert (tier[200:232] == classifier.TIER_FAST).all()


def test_a_throttled_guest_with_a_small_cap_still_probes_and_recovers():
    """The demo's case: 2 MiB chunks, a cap of a few chunks per interval
    (the host's rate shared by its guests), moves judged not to pay and
    the allowance at its floor (1/64): the scaled cap rounds to zero
    chunks, yet the guest must still try a swap now and then, and return
    to its full allowance when the swap pays."""
    n = 24
    guest = planner.GuestPlanner(n, 2 * MiB)
    guest.move_scale = planner.MIN_MOVE_SCALE
    tier = np.full(n, classifier.TIER_SLOW, dtype=np.uint8)
    tier[16:] = classifier.TIER_FAST         # 8 never-touched DRAM chunks
    hot = np.zeros(n, dtype=np.uint8)
    hot[:6] = 3                               # a steadily warm hot set
    rate = 8 * 2 * MiB                        # 8 chunks per 1 s interval
    moved_at = []
    for interval in range(1, 60):
        plan = guest.plan(hot, tier, 16, rate, 1.0)
        planner.apply_plan(tier, plan)
        if plan.moves:
            moved_at.append(interval)
        if guest.move_scale == 1.0:
            break
    # 8 / 64 of a chunk an interval: the first swap after 16 intervals.
    assert moved_at and moved_at[0] == 16, moved_at
    assert guest.move_scale == 1.0
    for _ in range(3):
        planner.apply_plan(tier, guest.plan(hot, tier, 16, rate, 1.0))
    assert (tier[:6] == classifier.TIER_FAST).all()


def test_throttling_never_delays_a_budget_cut():
    n = 128
    guest = planner.GuestPlanner(n, 4096)
    guest.move_scale = planner.MIN_MOVE_SCALE
    tier = np.zeros(n, dtype=np.uint8)
    plan = guest.plan(np.zeros(n, dtype=np.uint8), tier, 32 * 4096 / MiB,
                      n * 4096, 1.0)
    assert len(plan.demote) == n - 32
