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

"""Access trackers: per chunk and interval, how often the guest touched it.

Every tracker answers ``sample(guest, layout)`` with a uint8 array, one
value per chunk, on a scale of 0 to its ``scale``: the share of the
tracker's observations in that interval that saw the chunk accessed
(DAMON: sampled access checks; idle-page and soft-dirty: pages of the chunk
touched), rounded up so that any access counts.  ``heat_per_access`` is
stated per unit of the common scale, 0 to ``SAMPLE_SCALE``; a tracker
with a finer scale (DAMON's trace, whose samples average many
aggregations) gets the same heat for the same share of accesses in
smaller steps (``access_weight``).

Which tracker runs is ``[memtier] tracker``; ``auto`` takes the first the
kernel offers of DAMON (vaddr), the idle-page bitmap and soft-dirty.  A
tracker that cannot run says why (``TrackerUnavailable``), and ``auto``
logs each reason as it falls back.
"""

import logging

LOG = logging.getLogger(__name__)

#: Values of a sample run from 0 (not seen accessed) to a tracker's
#: ``scale``; this one by default, and the one heat_per_access counts in.
SAMPLE_SCALE = 20
KINDS = ('damon', 'idle_page', 'soft_dirty')


class TrackerUnavailable(Exception):
    """The kernel (or its current owner) does not let this tracker run."""


class NoSample(Exception):
    """The tracker has nothing to report for a guest this interval (which
    is not the same as "nothing was accessed"); the message says why."""


class Tracker:
    """Interface of the trackers."""

    name = None
    #: The value of a chunk seen accessed at every observation.
    scale = SAMPLE_SCALE
    #: How often, in seconds, the agent calls ``collect()`` while it waits
    #: for the next interval or while a move waits for the rate cap;
    #: None: never.
    collect_every_s = None

    def update(self, guests):
        """The managed guests changed: ``guests`` maps key to
        ``(guest, layout)``."""

    def sample(self, guest, layout):
        """Accesses per chunk since the previous sample (uint8)."""
        raise NotImplementedError

    def collect(self):
        """Between samples: take in what the kernel holds for the tracker
        that it would lose if left until the next sample."""

    def forget(self, key):
        """Drop any state of a guest that is gone."""

    def close(self):
        """Release kernel resources (kdamonds)."""


def access_weight(heat_per_access, scale):
    """Heat per unit of a sample on ``scale`` for ``heat_per_access`` per
    unit of ``SAMPLE_SCALE``: the same heat for the same share of
    accesses, rounded half up, at least 1."""
    if not isinstance(scale, int) or scale < 1:
        raise ValueError('a sample scale must be a whole number of at '
                         'least 1, got %r' % (scale,))
    return max(1, (heat_per_access * SAMPLE_SCALE + scale // 2) // scale)


def heat_weights(heat_per_access, scale):
    """(access_weight, unit_heat) of the classifier for samples on
    ``scale``: the heat per unit, and what one unit of ``SAMPLE_SCALE``
    then comes to (``heat_per_access`` where the scale divides it)."""
    weight = access_weight(heat_per_access, scale)
    return weight, weight * scale // SAMPLE_SCALE


def create(kind, kfs, **kwargs):
    """The tracker ``kind``, or with ``auto`` the first available one.
    Raises ``TrackerUnavailable`` naming every reason when none is."""
    from loki_nova.memtier.trackers import damon
    from loki_nova.memtier.trackers import idlepage
    from loki_nova.memtier.trackers import softdirty
    classes = {'damon': damon.DamonTracker,
               'idle_page': idlepage.IdlePageTracker,
               'soft_dirty': softdirty.SoftDirtyTracker}
    if kind != 'auto' and kind not in classes:
        raise ValueError('tracker must be auto or one of %s, got %r'
                         % (', '.join(KINDS), kind))
    order = KINDS if kind == 'auto' else (kind,)
    reasons = []
    for name in order:
        try:
            tracker = classes[name](kfs, **kwargs.get(name, {}))
        except TrackerUnavailable as exc:
            reasons.append('%s: %s' % (name, exc))
            if kind == 'auto':
                LOG.info('tracker %s is not available: %s', name, exc)
            continue
        LOG.info('access tracker: %s', name)
        return tracker
    raise TrackerUnavailable('no access tracker can run on this kernel: %s'
                             % '; '.join(reasons))
