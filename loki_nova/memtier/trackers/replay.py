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

"""A tracker that replays samples instead of reading the kernel.

It stands in for a real tracker where none can run: this build machine's
own kernel offers no usable DAMON, idle-page bitmap or soft-dirty bits, so
the agent's host-side benchmark and the loop's unit tests feed it recorded
or synthetic samples (e.g. from ``loki_nova.memtier.sim``).  It is never
chosen by ``[memtier] tracker``.
"""

import numpy as np

from loki_nova.memtier import trackers


class ReplayTracker(trackers.Tracker):
    """``source(guest, layout, n)`` returns the samples of interval ``n``
    (counted per guest from 0) as uint8 per chunk; it may raise to stand
    for a failing tracker."""

    name = 'replay'

    def __init__(self, source):
        self.source = source
        self.count = {}

    def sample(self, guest, layout):
        n = self.count.get(guest.key, 0)
        self.count[guest.key] = n + 1
        out = np.asarray(self.source(guest, layout, n), dtype=np.uint8)
        if out.shape != (len(layout),):
            raise ValueError('replayed samples for %s have shape %s, want '
                             '(%d,)' % (guest.key, out.shape, len(layout)))
        return out

    def forget(self, key):
        self.count.pop(key, None)
