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

"""How much of a replay's DRAM hit ratio needs knowledge of the future.

The simulator's ``static-best`` picks the chunks with the most accesses
over the whole trace, and is scored on the same intervals.  On a program
whose access pattern does not change, that pick also profits from the
chance variation of the intervals it is scored on -- something no policy
that places chunks before an interval happens can do.  The references
here put a number on it, each scored like the simulator (a fixed number
``k`` of chunks in DRAM per interval, hits over the intervals after the
warm-up, ties broken by chunk index):

* ``static_in_sample``: static-best itself;
* ``static_held_out``: the static pick for each half of the trace made
  from the totals of the other half;
* ``static_leave_one_out``: each interval scored against the static pick
  made from every *other* interval, past and future -- more than any
  placement policy knows, short only of the interval itself;
* ``causal``: estimators that see what a policy sees (the tracker's
  samples of the intervals before) -- the previous interval, the sum of
  all before, heats halved every 1, 2 or 4 intervals -- with no move cap
  and no hysteresis;
* ``causal_exact``: the same estimators fed the true accesses of the
  intervals before: what a perfect tracker would allow.

``static_leave_one_out`` is never above ``static_in_sample``, interval by
interval (for whole access counts; with fractions, up to rounding): the
pick from the totals maximises the totals.  Where it is below, reaching
static-best needs knowledge of the very interval being scored -- or luck
in breaking ties that only that interval breaks.
"""

import operator

import numpy as np

#: Causal estimators: name -> the share of the heat kept each interval.
ESTIMATORS = (('previous-interval', 0.0), ('cumulative', 1.0),
              ('halved-1', 0.5), ('halved-2', 0.5 ** 0.5),
              ('halved-4', 0.5 ** 0.25))


def _top(values, k):
    return np.argsort(-values, kind='stable')[:k]


def _check(accesses, samples, warmup, k):
    accesses = np.asarray(accesses, dtype=np.float64)
    samples = np.asarray(samples, dtype=np.float64)
    if accesses.ndim != 2 or samples.shape != accesses.shape:
        raise ValueError('accesses and samples must be arrays of the same '
                         'shape (intervals, chunks), got %s and %s'
                         % (accesses.shape, samples.shape))
    intervals, chunks = accesses.shape
    if intervals < 2:
        raise ValueError('accesses must hold at least 2 intervals (a pick '
                         'from the others needs one), got %d' % intervals)
    for name, value, most, what in (
            ('warmup', warmup, intervals - 1, 'the intervals less one'),
            ('k', k, chunks, 'the chunks')):
        try:
            operator.index(value)
        except TypeError:
            raise ValueError('%s must be a whole number, got %r'
                             % (name, value)) from None
        if not 0 <= value <= most:
            raise ValueError('%s must be 0 to %d (%s), got %d'
                             % (name, most, what, value))
    return accesses, samples


def references(accesses, samples, warmup, k):
    """The references above for one trace: ``accesses`` and ``samples``
    are (intervals, chunks) arrays of the true accesses and of what the
    tracker reported, ``k`` the chunks DRAM holds.  A dict of hit ratios
    (``causal`` and ``causal_exact`` map estimator names to theirs)."""
    accesses, samples = _check(accesses, samples, warmup, k)
    intervals = accesses.shape[0]
    measured = accesses[warmup:].sum()

    def score(choose):
        if not measured:
            return 0.0
        hits = sum(accesses[i][choose(i)].sum()
                   for i in range(warmup, intervals))
        return float(hits / measured)

    totals = accesses.sum(axis=0)
    whole = _top(totals, k)
    half = intervals // 2
    first = _top(accesses[:half].sum(axis=0), k)
    second = _top(accesses[half:].sum(axis=0), k)

    def estimators(observed):
        scores = {}
        for name, keep in ESTIMATORS:
            heat = np.zeros(accesses.shape[1])
            picks = []
            for i in range(intervals):
                picks.append(_top(heat, k))
                heat = heat * keep + observed[i]
            scores[name] = score(lambda i, p=picks: p[i])
        return scores

    return {
        'static_in_sample': score(lambda i: whole),
        'static_held_out': score(
            lambda i: second if i < half else first),
        'static_leave_one_out': score(
            lambda i: _top(totals - accesses[i], k)),
        'causal': estimators(samples),
        'causal_exact': estimators(accesses),
    }


def best(scores):
    """(name, hit ratio) of the best estimator in ``scores``."""
    name = max(scores, key=scores.get)
    return name, scores[name]
