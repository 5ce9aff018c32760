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

"""Synthetic access traces: how often each chunk is touched per interval.

A trace stands in for a real guest's memory accesses.  Each interval it
gives the *expected* accesses per chunk (``rates``); ``accesses`` draws the
realised counts (Poisson).  Hotness is assigned to chunks through a random
permutation, so hot chunks are scattered as they are in real guests.
"""

import numpy as np

TRACE_NAMES = ('zipf', 'uniform', 'scan', 'hotset', 'phases')


class Trace:
    """Base class: ``chunks`` chunks, ``accesses_per_chunk`` accesses per
    chunk per interval on average."""

    name = None

    def __init__(self, chunks, rng, accesses_per_chunk=8.0):
        if chunks < 1:
            raise ValueError('chunks must be >= 1, got %d' % chunks)
        self.chunks = chunks
        self.rng = rng
        self.total_rate = accesses_per_chunk * chunks

    def rates(self, interval):
        """Expected accesses per chunk (float64[chunks]) in ``interval``."""
        raise NotImplementedError

    def accesses(self, interval):
        """Realised accesses per chunk (int64[chunks]) in ``interval``."""
        return self.rng.poisson(self.rates(interval))

    def _scattered(self, weights):
        """Normalise ``weights`` (by rank) to the total rate, scattered over
        chunks by a fixed random permutation."""
        if not hasattr(self, '_permutation'):
            self._permutation = self.rng.permutation(self.chunks)
        rates = np.empty(self.chunks)
        rates[self._permutation] = weights * (self.total_rate / weights.sum())
        return rates


class ZipfTrace(Trace):
    """Chunk of rank r is accessed in proportion to r ** -alpha."""

    name = 'zipf'

    def __init__(self, chunks, rng, alpha=0.99, **kwargs):
        if not alpha > 0:
            raise ValueError('alpha must be > 0, got %r' % alpha)
        super().__init__(chunks, rng, **kwargs)
        ranks = np.arange(1, chunks + 1, dtype=np.float64)
        self._rates = self._scattered(ranks ** -alpha)

    def rates(self, interval):
        return self._rates


class UniformTrace(Trace):
    """Every chunk equally hot: no placement can beat the DRAM share."""

    name = 'uniform'

    def rates(self, interval):
        return np.full(self.chunks, self.total_rate / self.chunks)


class ScanTrace(Trace):
    """A window of ``window_fraction`` of memory, swept sequentially; each
    interval it advances by its own length (a streaming workload)."""

    name = 'scan'

    def __init__(self, chunks, rng, window_fraction=0.1, **kwargs):
        super().__init__(chunks, rng, **kwargs)
        self.window = max(1, int(chunks * window_fraction))

    def rates(self, interval):
        rates = np.zeros(self.chunks)
        start = (interval * self.window) % self.chunks
        index = (start + np.arange(self.window)) % self.chunks
        rates[index] = self.total_rate / self.window
        return rates


class HotSetTrace(Trace):
    """GUPS-style: ``hot_fraction`` of chunks take ``hot_share`` of the
    accesses, the rest are uniform; at ``shift_at`` the hot set moves to
    chunks that were cold."""

    name = 'hotset'

    def __init__(self, chunks, rng, hot_fraction=0.1, hot_share=0.9,
                 shift_at=None, **kwargs):
        super().__init__(chunks, rng, **kwargs)
        self.shift_at = shift_at
        order = rng.permutation(chunks)
        hot = max(1, int(chunks * hot_fraction))
        self.hot_sets = (order[:hot], order[hot:2 * hot])
        self.hot_share = hot_share

    def hot_set(self, interval):
        moved = self.shift_at is not None and interval >= self.shift_at
        return self.hot_sets[1 if moved else 0]

    def rates(self, interval):
        hot = self.hot_set(interval)
        cold_rate = self.total_rate * (1 - self.hot_share) / self.chunks
        rates = np.full(self.chunks, cold_rate)
        rates[hot] += self.total_rate * self.hot_share / len(hot)
        return rates


class PhaseTrace(Trace):
    """Memory in ``regions`` regions; region hotness follows Zipf(alpha)
    and is reshuffled among regions every ``phase_length`` intervals."""

    name = 'phases'

    def __init__(self, chunks, rng, regions=64, phase_length=20,
                 alpha=0.99, **kwargs):
        super().__init__(chunks, rng, **kwargs)
        self.regions = max(1, min(regions, chunks))
        self.phase_length = phase_length
        self.region_of = np.arange(chunks) * self.regions // chunks
        self.region_weights = np.arange(1, self.regions + 1,
                                        dtype=np.float64) ** -alpha
        self._phase = None

    def rates(self, interval):
        phase = interval // self.phase_length
        if phase != self._phase:
            self._phase = phase
            weights = self.rng.permutation(self.region_weights)
            per_chunk = weights[self.region_of]
            self._rates = per_chunk * (self.total_rate / per_chunk.sum())
        return self._rates


def make_trace(name, chunks, rng, alpha=0.99, intervals=None, **kwargs):
    """Build a trace by name; the moving hot set moves half way through."""
    if name == 'zipf':
        return ZipfTrace(chunks, rng, alpha=alpha, **kwargs)
    if name == 'uniform':
        return UniformTrace(chunks, rng, **kwargs)
    if name == 'scan':
        return ScanTrace(chunks, rng, **kwargs)
    if name == 'hotset':
        shift_at = intervals // 2 if intervals else None
        return HotSetTrace(chunks, rng, shift_at=shift_at, **kwargs)
    if name == 'phases':
        return PhaseTrace(chunks, rng, alpha=alpha, **kwargs)
    raise ValueError('unknown trace %r; valid traces: %s'
                     % (name, ', '.join(TRACE_NAMES)))
