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

"""Placement policies compared by the simulator, on one host.

Every policy owns a tier array over all chunks of all guests (guest ``g``
holds chunks ``guest_slices[g]``).  Each interval the engine first lets
newly touched chunks allocate (first touch: DRAM while the host has it
free), scores the interval's accesses against the placement, then hands the
policy that interval's *sampled* accesses so it can move chunks for the
next interval, within the host's move cap.  Only the oracle sees the true
accesses, and it sees them before they happen; ``static-best`` knows the
whole trace's total accesses per chunk in advance (hindsight) but never
moves a chunk.  No policy ever holds more chunks in DRAM than the host
has (the engine checks it every interval).
"""

import numpy as np

from loki_nova.memtier import classifier
from loki_nova.memtier.classifier import reference
from loki_nova.memtier.policy import arbiter
from loki_nova.memtier.policy import planner as planner_mod

FAST = classifier.TIER_FAST
SLOW = classifier.TIER_SLOW
ABSENT = classifier.TIER_ABSENT

POLICY_NAMES = ('loki', 'first-touch', 'kernel-like', 'recency',
                'previous-interval', 'static-best', 'oracle')


class Policy:
    """Base: first-touch allocation and move accounting."""

    name = None
    #: DRAM budget per guest (MiB) after each interval, for policies that
    #: keep budgets; None for the others.
    budgets_mb = None

    def __init__(self, host):
        self.host = host
        self.tier = np.full(host.chunks, ABSENT, dtype=np.uint8)
        self.moved_chunks = 0

    def allocate(self, touched):
        """First touch: chunks ``touched`` (bool[chunks]) for the first
        time land in DRAM while the host has room, in chunk order."""
        new = np.flatnonzero((self.tier == ABSENT) & touched)
        room = self.host.dram_chunks - int(np.count_nonzero(
            self.tier == FAST))
        self.tier[new[:max(room, 0)]] = FAST
        self.tier[new[max(room, 0):]] = SLOW

    def placement(self, interval, accesses):
        """Tier array the interval's accesses are scored against."""
        return self.tier

    def observe(self, interval, sampled):
        """React to this interval's sampled accesses."""

    def _move(self, promote, demote):
        self.tier[demote] = SLOW
        self.tier[promote] = FAST
        self.moved_chunks += len(promote) + len(demote)


class FirstTouch(Policy):
    """No tiering: pages stay where first touch put them."""

    name = 'first-touch'


class Oracle(Policy):
    """Clairvoyant: each interval DRAM holds the chunks that interval will
    access most.  An upper bound, free of move costs."""

    name = 'oracle'

    def placement(self, interval, accesses):
        best = np.argsort(-accesses, kind='stable')[:self.host.dram_chunks]
        tier = np.where(self.tier == ABSENT, ABSENT, SLOW).astype(np.uint8)
        tier[best] = FAST
        self.moved_chunks += int(np.count_nonzero(
            (tier == FAST) != (self.tier == FAST)))
        self.tier = tier
        return tier


class KernelLike(Policy):
    """Linux-style tiering: a sampled access to a slow chunk promotes it
    (in fault order, modelled as random, within the rate limit); DRAM is
    freed by demoting the least recently accessed chunks."""

    name = 'kernel-like'

    def __init__(self, host, rng):
        super().__init__(host)
        self.rng = rng
        self.last_seen = np.full(host.chunks, -1, dtype=np.int64)

    def observe(self, interval, sampled):
        self.last_seen[sampled > 0] = interval
        cap = self.host.cap_chunks
        candidates = np.flatnonzero((sampled > 0) & (self.tier == SLOW))
        candidates = self.rng.permutation(candidates)
        fast = np.flatnonzero(self.tier == FAST)
        # A promotion into free DRAM costs one move, one past it two (the
        # demotion that makes room) -- and only a chunk that was in DRAM
        # can make room, so no more can displace than DRAM held.
        into_free = min(len(candidates),
                        max(self.host.dram_chunks - len(fast), 0), cap)
        displacing = min(len(candidates) - into_free,
                         (cap - into_free) // 2, len(fast))
        promote_n = into_free + displacing
        need = max(0, len(fast) + promote_n - self.host.dram_chunks)
        lru = fast[np.argsort(self.last_seen[fast], kind='stable')[:need]]
        self._move(candidates[:promote_n], lru)


class Recency(Policy):
    """DRAM holds the most recently accessed chunks (no frequency): the
    same greedy selection as loki, scored by last-access interval."""

    name = 'recency'

    def __init__(self, host):
        super().__init__(host)
        self.last_seen = np.zeros(host.chunks, dtype=np.int64)

    def observe(self, interval, sampled):
        self.last_seen[sampled > 0] = interval + 1
        promote, demote = reference.select_moves(
            self.last_seen, self.tier, self.host.dram_chunks,
            self.host.cap_chunks, hysteresis=0, fill_min=1)
        self._move(promote, demote)


class PreviousInterval(Policy):
    """DRAM holds the chunks sampled hottest in the previous interval, no
    history: the same greedy selection as loki, scored by the last
    interval's samples alone, within the move cap."""

    name = 'previous-interval'

    def observe(self, interval, sampled):
        promote, demote = reference.select_moves(
            np.asarray(sampled), self.tier, self.host.dram_chunks,
            self.host.cap_chunks, hysteresis=0, fill_min=1)
        self._move(promote, demote)


class StaticBest(Policy):
    """The best placement that never changes, chosen with hindsight: the
    chunks with the most accesses over the whole trace (``totals``) are in
    DRAM from their first touch on, the rest never.  No moves."""

    name = 'static-best'

    def __init__(self, host, totals):
        super().__init__(host)
        totals = np.asarray(totals, dtype=np.float64)
        order = np.argsort(-totals, kind='stable')[:host.dram_chunks]
        self.best = np.zeros(host.chunks, dtype=bool)
        self.best[order[totals[order] > 0]] = True

    def allocate(self, touched):
        new = (self.tier == ABSENT) & touched
        self.tier[new & self.best] = FAST
        self.tier[new & ~self.best] = SLOW


class Loki(Policy):
    """The agent's policy: per-guest classifier under budgets from the
    host arbiter; the move cap is shared by guest size."""

    name = 'loki'

    def __init__(self, host, params=None):
        super().__init__(host)
        self.planners = [
            planner_mod.GuestPlanner(g.chunks, host.chunk_size, params)
            for g in host.guests]
        self.budgets_mb = [g.floor_mb for g in host.guests]
        self.hot_mb = [0] * len(host.guests)

    def observe(self, interval, sampled):
        host = self.host
        demands = [arbiter.GuestDemand(g.name, g.policy, g.floor_mb,
                                       g.ceiling_mb, self.hot_mb[i])
                   for i, g in enumerate(host.guests)]
        budgets = arbiter.allocate(host.dram_mb, 0, demands)
        for i, guest in enumerate(host.guests):
            part = host.guest_slices[i]
            tier = self.tier[part]
            share = guest.chunks / host.chunks
            plan = self.planners[i].plan(
                np.ascontiguousarray(np.minimum(sampled[part], 255),
                                     dtype=np.uint8),
                np.ascontiguousarray(tier), budgets[guest.name],
                host.move_bytes_per_s * share, host.interval_s)
            planner_mod.apply_plan(tier, plan)
            self.tier[part] = tier
            self.moved_chunks += plan.moves
            self.budgets_mb[i] = budgets[guest.name]
            hot = self.planners[i].hot_chunks(plan.classification.histogram)
            self.hot_mb[i] = hot * host.chunk_size // planner_mod.MiB


def make_policies(host, rng, params=None, names=POLICY_NAMES, totals=None):
    """The policies ``names`` on ``host``; ``static-best`` needs
    ``totals``, each chunk's accesses over the whole trace."""
    makers = {
        'loki': lambda: Loki(host, params),
        'first-touch': lambda: FirstTouch(host),
        'kernel-like': lambda: KernelLike(host, rng),
        'recency': lambda: Recency(host),
        'previous-interval': lambda: PreviousInterval(host),
        'static-best': lambda: StaticBest(host, totals),
        'oracle': lambda: Oracle(host),
    }
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError('unknown policies %s; valid: %s'
                         % (', '.join(unknown), ', '.join(makers)))
    if 'static-best' in names and totals is None:
        raise ValueError('static-best needs the trace\'s totals')
    return [makers[name]() for name in names]
