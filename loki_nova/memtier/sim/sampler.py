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
    """Turns realised access counts into sampled counts (uint8).

    ``samples`` checks, each looking back over ``check_share`` of the
    interval (default ``1 / samples``: the checks tile the interval), and
    the count of those that found a chunk touched given on a scale of
    0-``scale`` (default ``samples``: the count itself), rounded up.
    DAMON's trace read over a whole interval is of this kind: with a
    check every 31.25 ms, 160 checks of 1/160 of a 5 s interval each,
    reported on 0-160."""

    def __init__(self, rng, samples=20, detection=0.9, check_share=None,
                 scale=None):
        if not isinstance(samples, int) or samples < 1:
            raise ValueError('samples must be an integer >= 1, got %r'
                             % (samples,))
        if not 0 < detection <= 1:
            raise ValueError('detection must be in (0, 1], got %r'
                             % detection)
        if check_share is None:
            check_share = 1.0 / samples
        if not 0 < check_share <= 1:
            raise ValueError('check_share must be in (0, 1], got %r'
                             % (check_share,))
        if scale is None:
            if samples > 255:
                raise ValueError('samples above 255 need a scale of 1-255 '
                                 'to report them on, got %d samples'
                                 % samples)
            scale = samples
        if not 1 <= scale <= 255:
            raise ValueError('scale must be 1-255, got %r' % (scale,))
        self.rng = rng
        self.samples = samples
        self.detection = detection
        self.check_share = check_share
        self.scale = scale

    def sample(self, accesses):
        """``accesses``: int[N] accesses this interval -> uint8[N]."""
        # Accesses spread evenly over the interval: a check's window holds
        # at least one access with this probability.
        touched = -np.expm1(-np.asarray(accesses, dtype=np.float64)
                            * self.check_share)
        seen = self.rng.binomial(self.samples, touched * self.detection)
        if self.scale != self.samples:
            # Rounded up, as the DAMON tracker does: one check that found
            # a chunk touched counts at least 1.
            seen = -(-seen * self.scale // self.samples)
        return seen.astype(np.uint8)
