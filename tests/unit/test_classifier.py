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

"""The classifier backends against the reference, and its properties."""

import sys
import threading

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

from loki_nova.memtier import classifier
from loki_nova.memtier.classifier import _common
from loki_nova.memtier.classifier import _core
from loki_nova.memtier.policy import planner

FAST, ABSENT = classifier.TIER_FAST, classifier.TIER_ABSENT
FAST_BACKENDS = ('compiled', 'vectorized')


@st.composite
def intervals(draw, max_chunks=300):
    """One interval's inputs, biased toward the adversarial corners."""
    n = draw(st.one_of(st.sampled_from([0, 1, 2]),
                       st.integers(0, max_chunks)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    access_kind = draw(st.sampled_from(['random', 'zero', 'max', 'few']))
    access = {
        'random': lambda: rng.integers(0, 256, n),
        'zero': lambda: np.zeros(n),
        'max': lambda: np.full(n, 255),
        'few': lambda: rng.integers(0, 3, n),
    }[access_kind]().astype(np.uint8)
    tier_codes = draw(st.sampled_from([[0, 1], [0, 1, 2, 255], [0], [1],
                                       [255], [0, 255]]))
    tier = rng.choice(np.array(tier_codes, dtype=np.uint8), n)
    heat_kind = draw(st.sampled_from(['random', 'ties', 'zero', 'max',
                                      'small']))
    heat = {
        'random': lambda: rng.integers(0, 65536, n),
        'ties': lambda: rng.integers(0, 4, n) * 1000,
        # Around the cold level of DRAM chunks (2 ** decay_shift, at most
        # access_weight), so the cold swaps are compared too.
        'small': lambda: rng.integers(0, 8, n) ** 2,
        'zero': lambda: np.zeros(n),
        'max': lambda: np.full(n, 65535),
    }[heat_kind]().astype(np.uint16)
    budget = draw(st.one_of(st.just(0), st.integers(0, n + 2),
                            st.just(2 ** 62)))
    cap = draw(st.one_of(st.just(0), st.integers(0, 2 * n + 2),
                         st.just(2 ** 62)))
    params = classifier.ClassifierParams(
        decay_shift=draw(st.integers(0, 15)),
        access_weight=draw(st.sampled_from([0, 1, 64, 300, 65535])),
        hysteresis=draw(st.sampled_from([0, 1, 64, 512, 70000])),
        fill_min=draw(st.sampled_from([1, 2, 100, 65535, 65536])),
        unit_heat=draw(st.sampled_from([None, 0, 8, 64, 65535])))
    return access, tier, heat, budget, cap, params


def _run(backend, access, tier, heat, budget, cap, params, threads=None):
    heat = heat.copy()
    result = classifier.classify(access, tier, heat, budget, cap, params,
                                 backend=backend, threads=threads)
    return heat, result


def assert_same(expected, actual):
    (heat_a, a), (heat_b, b) = expected, actual
    np.testing.assert_array_equal(heat_a, heat_b)
    np.testing.assert_array_equal(a.histogram, b.histogram)
    assert a.histogram.dtype == b.histogram.dtype == np.uint32
    assert a.threshold == b.threshold
    np.testing.assert_array_equal(a.promote, b.promote)
    np.testing.assert_array_equal(a.demote, b.demote)
    assert a.promote.dtype == b.promote.dtype == np.int64
    assert (a.fast_chunks, a.slow_chunks) == (b.fast_chunks, b.slow_chunks)


def test_compiled_backend_is_the_default():
    assert classifier.DEFAULT_BACKEND == 'compiled'
    assert classifier.BACKENDS['compiled'] is _core.classify


@pytest.mark.parametrize('backend', FAST_BACKENDS)
@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(case=intervals())
def test_backend_matches_reference(backend, case):
    assert_same(_run('reference', *case), _run(backend, *case))


@pytest.mark.parametrize('backend', FAST_BACKENDS)
@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(case=intervals(max_chunks=20000))
def test_backend_matches_reference_across_blocks(backend, case):
    # The compiled kernel works in blocks of 2048 chunks and skips blocks
    # in pass 2; these sizes cross several block boundaries.
    assert_same(_run('reference', *case), _run(backend, *case))


@pytest.mark.parametrize('threads', [2, 3, 8])
@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(case=intervals(max_chunks=20000))
def test_threads_do_not_change_the_result(threads, case):
    # Parts are whole blocks of 2048 chunks; the boundary ties are split
    # among parts in index order.
    assert_same(_run('reference', *case),
                _run('compiled', *case, threads=threads))


@pytest.mark.parametrize('seed, threads', [(1, 1), (2, 1), (1, 2), (2, 4)])
def test_compiled_matches_on_a_realistic_large_interval(seed, threads):
    """Zipf-like heat over 1 Mi chunks: boundary ties, skipped blocks."""
    rng = np.random.default_rng(seed)
    n = 1 << 20
    heat = (65535 / np.arange(1, n + 1) ** 0.99).astype(np.uint16)
    heat = rng.permutation(heat)
    access = rng.binomial(20, 0.05, n).astype(np.uint8)
    tier = np.where(rng.random(n) < 0.25, 0, 1).astype(np.uint8)
    tier[rng.random(n) < 0.01] = ABSENT
    case = (access, tier, heat, n // 4, 40000,
            classifier.ClassifierParams())
    expected = _run('reference', *case)
    assert len(expected[1].promote) > 1000   # the case moves something
    assert_same(expected, _run('compiled', *case, threads=threads))


def test_result_fields_on_a_small_case():
    """A case small enough to check by hand."""
    access = np.array([0, 10, 0, 0, 0], dtype=np.uint8)
    tier = np.array([0, 1, 0, 1, 255], dtype=np.uint8)
    heat = np.array([100, 0, 900, 2000, 5000], dtype=np.uint16)
    params = classifier.ClassifierParams(decay_shift=1, access_weight=64,
                                         hysteresis=100, fill_min=1)
    result = classifier.classify(access, tier, heat, budget=2, move_cap=10,
                                 params=params)
    # heat - heat/2 + access * 64
    np.testing.assert_array_equal(heat, [50, 640, 450, 1000, 2500])
    # Budget full (2 fast chunks): chunk 3 (1000) swaps with chunk 0 (50),
    # chunk 1 (640) with chunk 2 (450): 640 > 450 + 100.
    np.testing.assert_array_equal(result.promote, [3, 1])
    np.testing.assert_array_equal(result.demote, [0, 2])
    assert (result.fast_chunks, result.slow_chunks) == (2, 2)
    # Absent chunk 4 is not counted; resident heat is 50, 450, 640, 1000:
    # 451 is the lowest level with at most budget (2) chunks at or above.
    assert result.histogram.sum() == 4
    assert result.threshold == 451


@pytest.mark.parametrize('backend', ['compiled', 'vectorized', 'reference'])
def test_a_cold_dram_chunk_gives_way_below_the_hysteresis(backend):
    """The demo's guests: budget full, steadily warm chunks (heat ~300:
    sparse samples under TCG) in the slow tier and DRAM chunks no longer
    used (heat 0, or 1, where halving leaves a chunk touched long ago).
    The gap stays below the hysteresis (512), yet the cold DRAM chunks
    give way; a DRAM chunk with more heat (here 2, above the cold level
    of 2 ** decay_shift) is still protected by the hysteresis."""
    tier = np.array([0, 0, 1, 1, 1, 0, 0, 0], dtype=np.uint8)
    access = np.zeros(8, dtype=np.uint8)
    params = classifier.ClassifierParams(decay_shift=1, hysteresis=512,
                                         fill_min=1)
    assert _common.cold_below(params) == 2
    # One interval without access halves the heat (0 and 1 stay).
    heat = np.array([600, 600, 600, 580, 560, 0, 1, 4], dtype=np.uint16)
    result = classifier.classify(access, tier, heat, budget=5, move_cap=10,
                                 params=params, backend=backend)
    np.testing.assert_array_equal(heat, [300, 300, 300, 290, 280, 0, 1, 2])
    # 300 and 290 swap with 0 and 1; 280 does not displace 2.
    np.testing.assert_array_equal(result.promote, [2, 3])
    np.testing.assert_array_equal(result.demote, [5, 6])
    # A cold DRAM chunk does not give way to a slow chunk that is no
    # hotter, or below fill_min.
    heat = np.array([600, 600, 1, 1, 1, 1, 1, 1], dtype=np.uint16)
    result = classifier.classify(access, tier, heat, budget=5, move_cap=10,
                                 params=params, backend=backend)
    assert len(result.promote) == len(result.demote) == 0
    params = classifier.ClassifierParams(decay_shift=1, hysteresis=512,
                                         fill_min=400)
    heat = np.array([600, 600, 600, 580, 560, 0, 1, 4], dtype=np.uint16)
    result = classifier.classify(access, tier, heat, budget=5, move_cap=10,
                                 params=params, backend=backend)
    assert len(result.promote) == len(result.demote) == 0


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(case=intervals())
def test_plan_properties(case):
    access, tier, heat, budget, cap, params = case
    new_heat, result = _run('compiled', *case)
    promote, demote = result.promote, result.demote
    slow = (tier != FAST) & (tier != ABSENT)
    # Promotions come only from slow chunks, demotions only from fast ones.
    assert slow[promote].all()
    assert (tier[demote] == FAST).all()
    assert len(np.unique(promote)) == len(promote)
    assert len(np.unique(demote)) == len(demote)
    # The lists respect the cap.
    assert len(promote) + len(demote) <= cap
    # Hottest first, coldest first.
    assert (np.diff(new_heat[promote].astype(int)) <= 0).all()
    assert (np.diff(new_heat[demote].astype(int)) >= 0).all()
    # Hotter never ranks behind colder: no slow chunk left behind is hotter
    # than one promoted, no fast chunk kept is colder than one demoted.
    left_slow = np.setdiff1d(np.flatnonzero(slow), promote)
    if len(promote) and len(left_slow):
        assert new_heat[left_slow].max() <= new_heat[promote].min()
    kept_fast = np.setdiff1d(np.flatnonzero(tier == FAST), demote)
    if len(demote) and len(kept_fast):
        assert new_heat[kept_fast].min() >= new_heat[demote].max()
    # Applying the plan never leaves DRAM over budget when the cap allows
    # the demotions the budget forces; when it does not, the plan only
    # demotes.
    fast_before = int(np.count_nonzero(tier == FAST))
    fast_after = fast_before - len(demote) + len(promote)
    if cap >= fast_before - budget:
        assert fast_after <= budget
    else:
        assert len(promote) == 0 and len(demote) == cap


def test_budget_cut_is_honoured_first_even_with_a_small_cap():
    n = 1000
    tier = np.zeros(n, dtype=np.uint8)
    tier[500:] = 1
    heat = np.arange(n, dtype=np.uint16)
    access = np.zeros(n, dtype=np.uint8)
    params = classifier.ClassifierParams(decay_shift=0, hysteresis=0)
    result = classifier.classify(access, tier, heat, budget=100,
                                 move_cap=50, params=params)
    # 400 forced demotions wanted, 50 allowed: all of the cap goes there.
    assert len(result.demote) == 50 and len(result.promote) == 0


def test_metadata_fits_a_tenth_of_a_percent_at_4k():
    """What the agent keeps per chunk: the planner's heat plus one
    interval's samples and tiers, as handed to the kernel."""
    chunks = 1 << 16
    guest = planner.GuestPlanner(chunks, chunk_size=4096)
    access = np.zeros(chunks, dtype=np.uint8)
    tier = np.zeros(chunks, dtype=np.uint8)
    guest.plan(access, tier, budget_mb=1, move_bytes_per_s=0,
               interval_s=1.0)
    per_chunk = (guest.heat.nbytes + access.nbytes + tier.nbytes) / chunks
    assert per_chunk <= classifier.METADATA_BYTES_PER_CHUNK == 4
    assert per_chunk / 4096 <= 0.001


def _valid(n=8):
    return (np.zeros(n, np.uint8), np.zeros(n, np.uint8),
            np.arange(n, dtype=np.uint16))


@pytest.mark.parametrize('backend', ['compiled', 'vectorized', 'reference'])
@pytest.mark.parametrize('mutate, error, name', [
    (lambda a, t, h: (a.astype(np.int8), t, h), TypeError, 'access'),
    (lambda a, t, h: (a, t.astype(np.uint16), h), TypeError, 'tier'),
    (lambda a, t, h: (a, t, h.astype(np.uint32)), TypeError, 'heat'),
    (lambda a, t, h: (list(a), t, h), TypeError, 'access'),
    (lambda a, t, h: (a[:-1], t, h), ValueError, 'same length'),
    (lambda a, t, h: (a, t, np.repeat(h, 2)[::2]), ValueError, 'heat'),
    (lambda a, t, h: (np.repeat(a, 2)[::2], t, h), ValueError, 'access'),
    (lambda a, t, h: (a.reshape(2, 4), t, h), ValueError, 'access'),
])
def test_bad_arrays_are_rejected_naming_the_argument(backend, mutate, error,
                                                     name):
    access, tier, heat = mutate(*_valid())
    before = np.array(heat, copy=True)
    with pytest.raises(error, match=name):
        classifier.classify(access, tier, heat, 4, 4, backend=backend)
    np.testing.assert_array_equal(np.asarray(heat), before)


@pytest.mark.parametrize('kwargs, error, name', [
    ({'budget': -1}, ValueError, 'budget'),
    ({'budget': 1.5}, TypeError, 'budget'),
    ({'budget': True}, TypeError, 'budget'),
    ({'move_cap': -3}, ValueError, 'move_cap'),
    ({'params': {'hysteresis': 1}}, TypeError, 'params'),
    ({'backend': 'gpu'}, ValueError, 'backend'),
    ({'threads': 0}, ValueError, 'threads'),
])
def test_bad_scalars_are_rejected_and_nothing_changes(kwargs, error, name):
    access, tier, heat = _valid()
    before = heat.copy()
    call = dict(budget=4, move_cap=4)
    call.update(kwargs)
    with pytest.raises(error, match=name):
        classifier.classify(access, tier, heat, **call)
    np.testing.assert_array_equal(heat, before)


def test_heat_sharing_memory_with_the_samples_is_rejected():
    buffer = np.zeros(16, dtype=np.uint8)
    with pytest.raises(ValueError, match='share memory'):
        classifier.classify(buffer[:8], np.zeros(8, np.uint8),
                            buffer.view(np.uint16), 1, 1)


def test_more_threads_than_supported_are_clamped():
    access, tier, heat = _valid()
    expected = _run('reference', access, tier, heat, 4, 4,
                    classifier.ClassifierParams())
    assert_same(expected, _run('compiled', access, tier, heat, 4, 4,
                               classifier.ClassifierParams(),
                               threads=2 ** 40))


def test_read_only_heat_is_rejected():
    access, tier, heat = _valid()
    heat.flags.writeable = False
    with pytest.raises(ValueError, match='heat must be writeable'):
        classifier.classify(access, tier, heat, 1, 1)


@pytest.mark.parametrize('field, value', [
    ('decay_shift', 16), ('decay_shift', -1), ('access_weight', 65536),
    ('hysteresis', -1), ('fill_min', 0), ('decay_shift', 1.0),
    ('unit_heat', 65536), ('unit_heat', -1)])
def test_bad_params_name_the_field(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        classifier.ClassifierParams(**{field: value})


def test_the_cold_level_is_one_access_on_the_common_scale():
    """With samples finer than the common scale (DAMON's trace: 8 heat
    per unit of 0-160 for 64 per unit of 0-20) a DRAM chunk is cold below
    the heat of one common unit as before, not of one fine unit: at
    decay_shift 4 a chunk at heat 10 never decays, and must still give
    way to a slow one that is hotter, though by less than the
    hysteresis."""
    coarse = classifier.ClassifierParams(decay_shift=4, access_weight=64,
                                         hysteresis=64)
    fine = classifier.ClassifierParams(decay_shift=4, access_weight=8,
                                       hysteresis=64, unit_heat=64)
    assert fine.unit == 64 and coarse.unit == 64
    assert classifier.ClassifierParams(access_weight=8).unit == 8
    for params in (coarse, fine):
        for backend in classifier.BACKENDS:
            access = np.zeros(2, dtype=np.uint8)
            tier = np.array([classifier.TIER_FAST, classifier.TIER_SLOW],
                            dtype=np.uint8)
            heat = np.array([10, 60], dtype=np.uint16)
            result = classifier.classify(access, tier, heat, 1, 4, params,
                                         backend=backend)
            assert result.promote.tolist() == [1], (params, backend)
            assert result.demote.tolist() == [0], (params, backend)


def test_compiled_kernel_releases_the_gil():
    """While one thread is inside the kernel, another runs Python."""
    n = 8 << 20
    access = np.ones(n, dtype=np.uint8)
    tier = np.zeros(n, dtype=np.uint8)
    heat = np.zeros(n, dtype=np.uint16)
    state = {'inside': False, 'done': False, 'progress': 0}

    def worker():
        state['inside'] = True
        for _ in range(3):
            classifier.classify(access, tier, heat, n // 2, n)
        state['inside'] = False
        state['done'] = True

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        while not state['done']:
            if state['inside']:
                state['progress'] += 1
        thread.join(timeout=60)
    finally:
        sys.setswitchinterval(old_interval)
    # Holding the GIL, the kernel would let this loop run only in the
    # switch intervals between calls: a few hundred iterations at most.
    assert state['progress'] > 20000
