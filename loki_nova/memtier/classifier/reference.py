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

"""The classifier kernel, written to be read: this module is the specification.

It favours clarity over speed (it sorts, O(N log N)); the compiled kernel in
``_core.pyx`` and the histogram formulation in ``vectorized.py`` must return
exactly what this module returns, for every input.

One call handles one guest for one interval:

1. *Heat update.*  ``heat = min(HEAT_MAX, heat - (heat >> decay_shift) +
   access * access_weight)`` in 32-bit arithmetic, stored back in place.
2. *Histogram* of the new heat over resident chunks (tier != TIER_ABSENT).
3. *Threshold*: the smallest heat ``t >= 1`` such that at most ``budget``
   chunks have ``heat >= t`` (``HEAT_MAX + 1`` when even the hottest level
   holds more chunks than the budget).
4. *Moves*, greedy and bounded by ``move_cap`` moves in total:

   a. forced demotions: while fast chunks exceed the budget, the coldest fast
      chunks go first -- a budget cut is honoured before anything else;
   b. fills: free budget is filled with the hottest slow chunks whose heat is
      at least ``fill_min``;
   c. swaps (only once the budget is full): the next hottest slow chunk
      trades places with the next coldest fast chunk while the slow one is
      hotter by more than ``hysteresis`` -- or while the fast one has gone
      cold and the slow one is hotter and has at least ``fill_min``.
      Cold is heat below ``min(2 ** decay_shift, unit)``
      (``_common.cold_below``; ``unit`` is ``access_weight`` unless the
      samples run finer than the common scale): less than one sampled
      access and so little
      that the decay no longer lowers it (``h - (h >> decay_shift)`` keeps
      any ``h < 2 ** decay_shift``).  A cold DRAM
      chunk holds budget like a free one, so a steadily warm chunk is not
      kept out of DRAM by one that is no longer used when sparse samples
      never build a gap of ``hysteresis``.  Each swap costs two moves.

   Ties in heat are broken by chunk index (lower first), so the result is a
   pure function of the inputs.

Tier codes: ``0`` is the fast tier (DRAM); ``255`` marks a chunk with nothing
resident (it is neither counted nor moved); every other value is a slow tier.
"""

import numpy as np

from loki_nova.memtier.classifier import _common


def _worth_swapping(slow_heat, fast_heat, hysteresis, fill_min, cold):
    """Step 4c's test for one pair (slow chunk, fast chunk)."""
    return (slow_heat > fast_heat + hysteresis
            or (fast_heat < cold and slow_heat > fast_heat
                and slow_heat >= fill_min))


def select_moves(heat, tier, budget, move_cap, hysteresis, fill_min,
                 cold=0):
    """Return ``(promote, demote)`` chunk indices for the given heat.

    This is steps 4a-4c above on an already updated heat array, with
    ``cold`` from ``_common.cold_below``; baselines in the simulator reuse
    it with scores of their own (and no cold level).
    """
    index = np.arange(heat.shape[0], dtype=np.int64)
    heat64 = heat.astype(np.int64)
    fast = index[tier == _common.TIER_FAST]
    slow = index[(tier != _common.TIER_FAST) & (tier != _common.TIER_ABSENT)]
    # np.lexsort sorts by its last key first.
    fast = fast[np.lexsort((fast, heat64[fast]))]          # coldest first
    slow = slow[np.lexsort((slow, -heat64[slow]))]         # hottest first

    cap_left = move_cap
    forced = min(max(len(fast) - budget, 0), cap_left)
    cap_left -= forced
    free = max(budget - len(fast), 0)
    eligible = int(np.count_nonzero(heat64[slow] >= fill_min))
    fills = min(free, eligible, cap_left)
    cap_left -= fills

    swaps = 0
    if len(fast) - forced + fills >= budget:
        while (2 * (swaps + 1) <= cap_left
               and fills + swaps < len(slow)
               and forced + swaps < len(fast)
               and _worth_swapping(heat64[slow[fills + swaps]],
                                   heat64[fast[forced + swaps]],
                                   hysteresis, fill_min, cold)):
            swaps += 1
    return slow[:fills + swaps].copy(), fast[:forced + swaps].copy()


def classify(access, tier, heat, budget, move_cap, params):
    """Run one interval of the kernel; see the module docstring.

    Arguments are assumed valid (the public ``classify`` validates them).
    ``heat`` is updated in place.
    """
    new_heat = heat.astype(np.uint32)
    new_heat -= new_heat >> params.decay_shift
    new_heat += access.astype(np.uint32) * np.uint32(params.access_weight)
    np.minimum(new_heat, _common.HEAT_MAX, out=new_heat)
    heat[:] = new_heat

    resident = tier != _common.TIER_ABSENT
    histogram = np.bincount(heat[resident],
                            minlength=_common.HEAT_LEVELS).astype(np.uint32)

    # at_or_above[t] = resident chunks with heat >= t.
    at_or_above = np.cumsum(histogram[::-1].astype(np.int64))[::-1]
    fitting_levels = [level for level in range(1, _common.HEAT_LEVELS)
                      if at_or_above[level] <= budget]
    threshold = min(fitting_levels, default=_common.HEAT_LEVELS)

    promote, demote = select_moves(heat, tier, budget, move_cap,
                                   params.hysteresis, params.fill_min,
                                   _common.cold_below(params))
    return _common.Classification(
        histogram=histogram,
        threshold=threshold,
        promote=promote,
        demote=demote,
        fast_chunks=int(np.count_nonzero(tier == _common.TIER_FAST)),
        slow_chunks=int(np.count_nonzero(
            resident & (tier != _common.TIER_FAST))),
    )
