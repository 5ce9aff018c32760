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

"""A model of access sampling as DAMON or the idle-page bitmap see it.

Real trackers do not count accesses: each *sample* they check whether a
chunk was touched since the previous check (the PTE accessed bit) and reset
it.  Over an interval of ``samples`` checks a chunk's sampled count is the
number of checks that found it touched.  So the count saturates for hot
chunks, is noisy for lukewarm ones, and a check can miss an access
(``detection`` < 1, e.g. DAMON looking at one page of a region).
"""

import numpy as np


class AccessSampler:
    """Turns realised access counts into sampled counts (uint8)."""

    def __init__(self, rng, samples=20, detection=0.9):
        if not 1 <= samples <= 255:
            raise ValueError('samples must be 1-255, got %d' % samples)
        if not 0 < detection <= 1:
            raise ValueError('detection must be in (0, 1], got %r'
                             % detection)
        self.rng = rng
        self.samples = samples
        self.detection = detection

    def sample(self, accesses):
        """``accesses``: int[N] accesses this interval -> uint8[N]."""
        # Accesses spread evenly over the interval: a check window of
        # 1/samples of it holds at least one access with this probability.
        touched = -np.expm1(-np.asarray(accesses, dtype=np.float64)
                            / self.samples)
        seen = self.rng.binomial(self.samples, touched * self.detection)
        return seen.astype(np.uint8)
