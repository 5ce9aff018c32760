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

"""Hot/cold classification of a guest's memory chunks, one interval a call.

``classify()`` validates its arguments and runs the compiled kernel
(``_core``).  Three backends share one contract, held equal by the tests:

* ``reference`` -- readable, sorting-based: the specification;
* ``vectorized`` -- histogram-based NumPy, the fallback when the extension
  is not built;
* ``compiled`` -- the Cython kernel.
"""

import logging
import os

from loki_nova.memtier.classifier import _common
from loki_nova.memtier.classifier import reference
from loki_nova.memtier.classifier import vectorized

try:
    from loki_nova.memtier.classifier import _core
except ImportError:  # pragma: no cover - exercised only without a build
    _core = None

LOG = logging.getLogger(__name__)

ClassifierParams = _common.ClassifierParams
Classification = _common.Classification
TIER_FAST = _common.TIER_FAST
TIER_SLOW = _common.TIER_SLOW
TIER_ABSENT = _common.TIER_ABSENT
HEAT_MAX = _common.HEAT_MAX
HEAT_LEVELS = _common.HEAT_LEVELS
METADATA_BYTES_PER_CHUNK = _common.METADATA_BYTES_PER_CHUNK

BACKENDS = {'reference': reference.classify,
            'vectorized': vectorized.classify}
if _core is not None:
    BACKENDS['compiled'] = _core.classify
    DEFAULT_BACKEND = 'compiled'
else:  # pragma: no cover
    DEFAULT_BACKEND = 'vectorized'
    LOG.warning('The compiled classifier (loki_nova.memtier.classifier.'
                '_core) is not built; using the NumPy formulation, which is '
                'many times slower. Reinstall loki-nova with Cython present.')


#: Below this many chunks the compiled kernel runs on one thread: starting
#: threads would cost more than it saves.
PARALLEL_MIN_CHUNKS = 1 << 20


def default_threads(chunks):
    """Threads the compiled kernel uses for ``chunks`` chunks by default."""
    if chunks < PARALLEL_MIN_CHUNKS or _core is None:
        return 1
    return max(1, min(os.cpu_count() or 1, _core.MAX_THREADS))


def classify(access, tier, heat, budget, move_cap, params=None,
             backend=None, threads=None):
    """Update ``heat`` in place from one interval's samples and plan moves.

    :param access: uint8[N], sampled accesses per chunk this interval.
    :param tier: uint8[N], where each chunk is: ``TIER_FAST`` (0), a slow
        tier (1-254) or ``TIER_ABSENT`` (255, nothing resident).
    :param heat: uint16[N], decayed heat per chunk, kept between calls.
    :param budget: the guest's fast-tier budget, in chunks.
    :param move_cap: most chunk moves (promotions + demotions) to plan.
    :param params: ``ClassifierParams``; defaults when omitted.
    :param backend: 'compiled', 'vectorized' or 'reference'.
    :param threads: threads of the compiled kernel (default: one for small
        guests, else the CPU count, at most 8); the result is the same for
        any number.
    :returns: ``Classification``.
    :raises TypeError, ValueError: naming the bad argument; nothing is
        modified then.
    """
    if params is None:
        params = ClassifierParams()
    budget, move_cap = _common.validate(access, tier, heat, budget,
                                        move_cap, params)
    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError('backend must be one of %s, got %r'
                         % (', '.join(sorted(BACKENDS)), backend))
    if threads is not None:
        _common._check_int('threads', threads, 1, None)
    if backend == 'compiled':
        if threads is None:
            threads = default_threads(heat.shape[0])
        threads = min(threads, _core.MAX_THREADS)
        return _core.classify(access, tier, heat, budget, move_cap, params,
                              threads)
    return BACKENDS[backend](access, tier, heat, budget, move_cap, params)
