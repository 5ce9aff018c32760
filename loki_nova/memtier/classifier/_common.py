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

"""Types, constants and argument checks shared by every classifier backend."""

import dataclasses
import numbers
import typing

import numpy as np

#: Tier code of the fast tier (DRAM).
TIER_FAST = 0
#: Tier code of the (first) slow tier; any code other than TIER_FAST and
#: TIER_ABSENT counts as slow.
TIER_SLOW = 1
#: Tier code of a chunk with nothing resident: never counted, never moved.
TIER_ABSENT = 255

HEAT_MAX = 0xFFFF
HEAT_LEVELS = HEAT_MAX + 1
#: The kernel keeps uint32 counters.
MAX_CHUNKS = 0xFFFFFFFF
#: Per-chunk metadata the agent keeps: access (u8) + tier (u8) + heat (u16).
METADATA_BYTES_PER_CHUNK = 4


@dataclasses.dataclass(frozen=True)
class ClassifierParams:
    """Tuning of the heat score and of the move selection.

    :param decay_shift: each interval, heat loses ``heat >> decay_shift``
        (1 halves it; 0 forgets everything each interval). 0-15.
    :param access_weight: heat added per sampled access. 0-65535.
    :param hysteresis: a slow chunk displaces a fast one only when it is
        hotter by more than this many heat units, or when the fast one has
        gone cold (less heat than one sampled access, and than the decay
        can lower). >= 0.
    :param fill_min: the least heat a slow chunk needs to be promoted into
        free budget. >= 1.
    :param unit_heat: the heat of one sampled access on the common sample
        scale (``trackers.SAMPLE_SCALE``), where a tracker's samples run
        finer (DAMON's trace: ``access_weight`` is then a fraction of it);
        None: ``access_weight``.  What counts as hot, and the most a cold
        chunk may have.  0-65535.
    """

    decay_shift: int = 1
    access_weight: int = 64
    hysteresis: int = 256
    fill_min: int = 1
    unit_heat: typing.Optional[int] = None

    def __post_init__(self):
        _check_int('decay_shift', self.decay_shift, 0, 15)
        _check_int('access_weight', self.access_weight, 0, HEAT_MAX)
        _check_int('hysteresis', self.hysteresis, 0, None)
        _check_int('fill_min', self.fill_min, 1, None)
        if self.unit_heat is not None:
            _check_int('unit_heat', self.unit_heat, 0, HEAT_MAX)

    @property
    def unit(self):
        """The heat of one sampled access on the common scale."""
        return self.access_weight if self.unit_heat is None \
            else self.unit_heat


def cold_below(params):
    """Heat under which a DRAM chunk counts as cold when choosing swaps:
    less than one sampled access on the common scale (``params.unit``),
    and too little for the decay to lower (``h - (h >> decay_shift)``
    keeps any ``h < 2 ** decay_shift``)."""
    return min(1 << params.decay_shift, params.unit)


class Classification(typing.NamedTuple):
    """What one interval of the kernel returns for one guest."""

    #: uint32[HEAT_LEVELS]: resident chunks per heat level, after the update.
    histogram: np.ndarray
    #: Smallest heat t >= 1 with at most ``budget`` chunks at heat >= t.
    threshold: int
    #: int64 chunk indices to move to the fast tier, hottest first.
    promote: np.ndarray
    #: int64 chunk indices to move off the fast tier, coldest first.
    demote: np.ndarray
    #: Fast-tier chunks before the moves.
    fast_chunks: int
    #: Slow-tier chunks before the moves.
    slow_chunks: int


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError('%s must be an integer, got %r' % (name, value))
    if value < low or (high is not None and value > high):
        valid = ('>= %d' % low) if high is None else ('%d-%d' % (low, high))
        raise ValueError('%s must be %s, got %d' % (name, valid, value))


def _check_array(name, array, dtype, writeable=False):
    if not isinstance(array, np.ndarray):
        raise TypeError('%s must be a numpy array of %s, got %s'
                        % (name, np.dtype(dtype).name, type(array).__name__))
    if array.dtype != dtype:
        raise TypeError('%s must have dtype %s, got %s'
                        % (name, np.dtype(dtype).name, array.dtype.name))
    if array.ndim != 1:
        raise ValueError('%s must be one-dimensional, got %d dimensions'
                         % (name, array.ndim))
    if not array.flags.c_contiguous:
        raise ValueError('%s must be C-contiguous (use '
                         'numpy.ascontiguousarray)' % name)
    if writeable and not array.flags.writeable:
        raise ValueError('%s must be writeable: heat is updated in place'
                         % name)


def validate(access, tier, heat, budget, move_cap, params):
    """Check every argument before anything is touched; return the clamped
    ``(budget, move_cap)``.

    Raises TypeError or ValueError naming the offending argument.
    """
    _check_array('access', access, np.uint8)
    _check_array('tier', tier, np.uint8)
    _check_array('heat', heat, np.uint16, writeable=True)
    if not (access.shape[0] == tier.shape[0] == heat.shape[0]):
        raise ValueError('access, tier and heat must have the same length, '
                         'got %d, %d and %d'
                         % (access.shape[0], tier.shape[0], heat.shape[0]))
    if heat.shape[0] > MAX_CHUNKS:
        raise ValueError('at most %d chunks per call, got %d'
                         % (MAX_CHUNKS, heat.shape[0]))
    # Bounds overlap is exact for one-dimensional contiguous arrays.
    if np.may_share_memory(heat, access) or np.may_share_memory(heat, tier):
        raise ValueError('heat must not share memory with access or tier')
    _check_int('budget', budget, 0, None)
    _check_int('move_cap', move_cap, 0, None)
    if not isinstance(params, ClassifierParams):
        raise TypeError('params must be a ClassifierParams, got %s'
                        % type(params).__name__)
    # Past these bounds the answer no longer changes; clamping keeps the
    # compiled kernel in int64.
    chunks = heat.shape[0]
    return int(min(budget, chunks)), int(min(move_cap, 2 * chunks))
