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

"""The driver's tier split: libvirt's cells + the kernel's memory tiers
(fixture trees of real sysfs layouts) or ``[loki] node_tiers``."""

import logging
import os
import re

import pytest

from loki_nova.memtier import kernfs
from loki_nova.virt import tiers

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                        'fixtures', 'kernfs')
DRAM0 = tiers.Cell(0, 16384, 8)
DRAM1 = tiers.Cell(1, 16384, 8)
SLOW2 = tiers.Cell(2, 65536, 0)


def write_tiers(root, **tiers_by_name):
    for name, nodes in tiers_by_name.items():
        d = root / 'sys/devices/virtual/memory_tiering' / name
        d.mkdir(parents=True)
        (d / 'nodelist').write_text(nodes + '\n')
    return kernfs.KernelFS(str(root))


def test_kernel_tiers_split_fast_and_slow(tmp_path):
    kfs = write_tiers(tmp_path, memory_tier4='0-1', memory_tier22='2')
    t = tiers.discover([DRAM0, DRAM1, SLOW2], kfs)
    assert t.tiered
    assert (t.fast, t.slow) == ({0: 16384, 1: 16384}, {2: 65536})
    assert (t.fast_mb, t.slow_mb) == (32768, 65536)
    assert 'memory_tier4, memory_tier22' in t.source


def test_sandbox_like_fixture_tree():
    kfs = kernfs.KernelFS(os.path.join(FIXTURES, 'two_tier'))
    raw = sorted(os.listdir(os.path.join(
        FIXTURES, 'two_tier', 'sys/devices/virtual/memory_tiering')))
    assert raw, 'fixture has kernel memory tiers'
    t = tiers.discover([tiers.Cell(0, 1024, 1), tiers.Cell(1, 1024, 0)],
                       kfs)
    assert (t.fast_nodes, t.slow_nodes) == ([0], [1])


def test_three_tiers_all_slow_ranks_are_slow(tmp_path):
    kfs = write_tiers(tmp_path, memory_tier4='0', memory_tier22='1',
                      memory_tier30='2')
    t = tiers.discover([DRAM0, tiers.Cell(1, 100, 0), SLOW2], kfs)
    assert (t.fast_nodes, t.slow_nodes) == ([0], [1, 2])


def test_one_tier_with_cpuless_node_is_untiered_with_warning(tmp_path,
                                                             caplog):
    # The 6.x trap: no HMAT, so the CXL node sits in the DRAM tier.
    kfs = write_tiers(tmp_path, memory_tier4='0-2')
    with caplog.at_level(logging.WARNING):
        t = tiers.discover([DRAM0, DRAM1, SLOW2], kfs)
    assert not t.tiered
    assert t.fast_mb == 16384 * 2 + 65536
    assert 'set [loki] node_tiers' in caplog.text
    assert 'node2 (65536 MiB, no CPUs)' in caplog.text


def test_no_memory_tiering_dir_is_untiered(tmp_path):
    t = tiers.discover([DRAM0, DRAM1], kernfs.KernelFS(str(tmp_path)))
    assert not t.tiered and t.fast_nodes == [0, 1]


def test_override_wins_over_kernel(tmp_path):
    kfs = write_tiers(tmp_path, memory_tier4='0-2')
    t = tiers.discover([DRAM0, DRAM1, SLOW2], kfs,
                       {'0': '0', '1': '0', '2': '1'})
    assert (t.fast_nodes, t.slow_nodes) == ([0, 1], [2])
    assert t.source == '[loki] node_tiers'


@pytest.mark.parametrize('override,said', [
    ({'0': '0', '1': '0'}, 'it leaves out node2'),
    ({'0': '0', '1': '0', '2': '1', '7': '1'},
     'it names node7, not on this host'),
    ({'0': '1', '1': '1', '2': '2'}, 'gives no node rank 0 (DRAM)'),
    ({'0': 'fast', '1': '0', '2': '1'}, 'node_tiers entry 0:fast'),
])
def test_bad_override_names_the_problem(tmp_path, override, said):
    with pytest.raises(tiers.TierError, match=re.escape(said)) as exc:
        tiers.discover([DRAM0, DRAM1, SLOW2],
                       kernfs.KernelFS(str(tmp_path)), override)
    assert '[loki]' in str(exc.value)
