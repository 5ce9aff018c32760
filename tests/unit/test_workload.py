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

"""The test workload's alternating hot region (bench_damon_read.py)."""

import time

import pytest

from loki_nova.memtier import workload

MiB = workload.MiB


def test_the_hot_region_alternates_between_two_places():
    w = workload.Workload(8, 2)
    thread = w.alternate(4, 20)
    try:
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < 2 or w.hot_offset != 0:
            assert time.monotonic() < deadline, seen
            seen.add(w.hot_offset)
            w.stop.wait(0.005)
        assert seen == {0, 4 * MiB}
    finally:
        w.stop.set()
        thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize('offset, period, said', [
    (7, 20, 'hot region at 7 MiB does not fit'),
    (4, 0, 'alternation period must be > 0 ms'),
])
def test_a_bad_alternation_is_refused_before_it_starts(
        offset, period, said):
    w = workload.Workload(8, 2)
    with pytest.raises(ValueError, match=said):
        w.alternate(offset, period)
    assert w.hot_offset == 0
