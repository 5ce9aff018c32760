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

"""Per-guest planning: from a DRAM budget and samples to a move plan.

A ``GuestPlanner`` keeps one guest's heat between intervals.  Each interval
it turns the budget (MiB) and the move-rate cap (bytes per second) into
chunk counts, runs the classifier and returns a ``MovePlan``: demotions
first whenever promotions would not fit in DRAM without them, so the
guest never holds more than its budget in the middle of applying a plan.

Moves are judged by the next interval's samples: if the chunks promoted
were not accessed more than those demoted, history is not predicting the
future (a streaming scan, uniformly random access) and migrating only costs
bandwidth, so the guest's move allowance halves, down to 1/64 of the cap,
which keeps probing; as soon as moves pay again it is restored in full,
so that a workload whose hot set moves is followed at once.  Demotions that
a budget cut forces are never throttled.
"""

import dataclasses
import logging

import numpy as np

from loki_nova.memtier import classifier

LOG = logging.getLogger(__name__)

MiB = 1024 * 1024
CHUNK_SIZES = (4096, 2 * MiB)
#: Smallest share of the move cap a guest is throttled down to.
MIN_MOVE_SCALE = 1.0 / 64


@dataclasses.dataclass
class MovePlan:
    """Moves for one guest and interval, in the order to apply them."""

    #: (chunk indices, target tier code) batches, in order.
    batches: list
    budget_chunks: int
    cap_chunks: int
    classification: classifier.Classification

    @property
    def promote(self):
        return self.classification.promote

    @property
    def demote(self):
        return self.classification.demote

    @property
    def moves(self):
        return len(self.promote) + len(self.demote)


class GuestPlanner:
    """Heat state and move planning for one guest of ``chunks`` chunks."""

    def __init__(self, chunks, chunk_size=2 * MiB, params=None,
                 backend=None):
        if chunk_size not in CHUNK_SIZES:
            raise ValueError('chunk_size must be one of %s bytes, got %r'
                             % (', '.join(map(str, CHUNK_SIZES)),
                                chunk_size))
        if chunks < 0:
            raise ValueError('chunks must be >= 0, got %d' % chunks)
        self.chunk_size = chunk_size
        self.heat = np.zeros(chunks, dtype=np.uint16)
        self.params = params or classifier.ClassifierParams()
        self.backend = backend
        # Fractions of a chunk of unspent move allowance carried forward, so
        # that a cap below one chunk per interval still moves, on average,
        # at the configured rate.
        self._carry_bytes = 0.0
        self.move_scale = 1.0
        # Chunks of throttled allowance saved up towards the next probe.
        self._probe_chunks = 0.0
        self._last_promoted = self._last_demoted = None

    def budget_chunks(self, budget_mb):
        if budget_mb < 0:
            raise ValueError('budget_mb must be >= 0, got %r' % budget_mb)
        return int(budget_mb * MiB // self.chunk_size)

    def cap_chunks(self, move_bytes_per_s, interval_s):
        if move_bytes_per_s < 0 or interval_s <= 0:
            raise ValueError('move_bytes_per_s must be >= 0 and interval_s '
                             '> 0, got %r and %r'
                             % (move_bytes_per_s, interval_s))
        allowance = move_bytes_per_s * interval_s + self._carry_bytes
        chunks = int(allowance // self.chunk_size)
        self._carry_bytes = min(allowance - chunks * self.chunk_size,
                                float(self.chunk_size))
        return chunks

    def _judge_last_moves(self, access):
        """Adjust ``move_scale`` by whether the last promotions paid."""
        promoted, demoted = self._last_promoted, self._last_demoted
        if promoted is None or not len(promoted):
            return
        promoted_rate = float(access[promoted].mean())
        demoted_rate = float(access[demoted].mean()) if len(demoted) else 0.0
        if promoted_rate > demoted_rate:
            self.move_scale = 1.0
        else:
            self.move_scale = max(MIN_MOVE_SCALE, self.move_scale / 2)
            LOG.debug('moves did not pay (promoted chunks %.2f accesses, '
                      'demoted %.2f): move allowance now %.3f of the cap',
                      promoted_rate, demoted_rate, self.move_scale)

    def _probe(self, cap):
        """Moves a throttled guest may make this interval: its scaled share
        of ``cap``, saved up across intervals until it reaches a swap (two
        moves), so that a small cap scaled down still probes now and then
        instead of rounding to no moves at all, ever."""
        self._probe_chunks += cap * self.move_scale
        if self._probe_chunks < 2:
            return 0
        probe = int(self._probe_chunks)
        self._probe_chunks -= probe
        return probe

    def plan(self, access, tier, budget_mb, move_bytes_per_s, interval_s):
        """Classify one interval's samples and return the ``MovePlan``."""
        budget = self.budget_chunks(budget_mb)
        cap = self.cap_chunks(move_bytes_per_s, interval_s)
        self._judge_last_moves(access)
        if self.move_scale < 1.0:
            forced = int(np.count_nonzero(tier == classifier.TIER_FAST)) \
                - budget
            cap = min(cap, max(forced, self._probe(cap)))
        else:
            self._probe_chunks = 0.0
        result = classifier.classify(access, tier, self.heat, budget, cap,
                                     self.params, backend=self.backend)
        self._last_promoted, self._last_demoted = (result.promote,
                                                   result.demote)
        promote_fast = (classifier.TIER_FAST, result.promote)
        demote_slow = (classifier.TIER_SLOW, result.demote)
        tight = result.fast_chunks + len(result.promote) > budget
        order = [demote_slow, promote_fast] if tight \
            else [promote_fast, demote_slow]
        batches = [(chunks, target) for target, chunks in order
                   if len(chunks)]
        return MovePlan(batches=batches, budget_chunks=budget,
                        cap_chunks=cap, classification=result)

    def hot_chunks(self, histogram, hot_heat=None):
        """Chunks at or above ``hot_heat`` (default: one sampled access
        this interval on the common scale, ``params.unit``) -- the guest's
        hot demand for the arbiter."""
        level = self.params.unit if hot_heat is None else hot_heat
        level = max(1, min(level, classifier.HEAT_MAX))
        return int(histogram[level:].sum())


def apply_plan(tier, plan):
    """Apply ``plan`` to a tier array, as the mover would (simulation)."""
    for chunks, target in plan.batches:
        tier[chunks] = target
