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

"""Topology and the kernel-fs door, on the fixture trees in
tests/fixtures/kernfs (shaped like real sysfs)."""

import os
import re
import shutil

import pytest

from loki_nova.memtier import kernfs
from loki_nova.memtier import topology

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'fixtures',
                        'kernfs')


def fs(name):
    return kernfs.KernelFS(os.path.join(FIXTURES, name))


@pytest.mark.parametrize('text,want', [
    ('', ()), ('0', (0,)), ('0-3,8', (0, 1, 2, 3, 8)),
    ('10-11,2', (2, 10, 11)), ('0\n', (0,))])
def test_parse_list(text, want):
    assert kernfs.parse_list(text) == want


@pytest.mark.parametrize('text', ['a', '3-1', '1-', '0,,2'])
def test_parse_list_rejects_garbage_naming_it(text):
    with pytest.raises(ValueError, match='not a kernel cpu/node list'):
        kernfs.parse_list(text)


def test_two_tiers_like_the_sandbox():
    topo = topology.discover(fs('two_tier'))
    assert [n.id for n in topo.fast_nodes] == [0]
    assert [n.id for n in topo.slow_nodes] == [1]
    node1 = topo.node(1)
    assert node1.cpus == () and node1.total_mb == 1024
    assert node1.kernel_tier == 144 and node1.rank == 1
    assert topo.node(0).distances == {0: 10, 1: 20}
    assert topo.demotion_target() == 1 and topo.promotion_target(1) == 0
    table = topo.node_to_tier()
    assert table[0] == 0 and table[1] == 1 and table[2] == 255


def test_any_number_of_tiers_ranked_by_kernel_tier():
    topo = topology.discover(fs('three_tier'))
    assert {n.id: n.rank for n in topo.nodes} == {0: 0, 1: 0, 2: 1, 3: 2}
    assert topo.fast_mb == 131072 and topo.slow_mb == 786432
    # Demotion goes one tier down, to the nearest node of that tier.
    assert topo.demotion_target(0) == 2 and topo.demotion_target(1) == 2
    # Promotion from node 3 goes to the nearer DRAM node (17 < 28).
    assert topo.promotion_target(3) == 0
    assert 'slow tier 2: node 3' in topo.describe()


@pytest.mark.parametrize('tree,said', [
    ('one_tier', 'memory_tier4 = node0,1 puts every node in one tier'),
    ('single_node', 'memory_tier4 = node0 puts every node in one tier'),
    ('no_tiers', 'the kernel reports no memory tiers'),
])
def test_refuses_hosts_without_a_slow_tier_saying_what_it_saw(tree, said):
    with pytest.raises(topology.TopologyError) as err:
        topology.discover(fs(tree))
    text = str(err.value)
    assert said in text
    assert 'node0 (' in text and 'node_tiers' in text


def test_override_ranks_nodes_the_kernel_could_not():
    topo = topology.discover(fs('one_tier'), {'0': '0', '1': '1'})
    assert topo.source == 'override'
    assert [n.id for n in topo.slow_nodes] == [1]
    assert topo.node(1).kernel_tier is None


def test_override_uses_only_the_nodes_it_names():
    topo = topology.discover(fs('three_tier'), {0: 0, 3: 1})
    assert [n.id for n in topo.nodes] == [0, 3]


@pytest.mark.parametrize('override,said', [
    ({'0': '0', '5': '1'}, 'names node 5, which does not exist'),
    ({'0': '0', '1': '0'}, 'puts every node in one tier'),
    ({'1': '1'}, 'gives no node rank 0 (DRAM)'),
    ({'0': 'fast'}, 'node_tiers entry 0:fast is not node:rank'),
    ({'-1': '0'}, 'node_tiers entry -1:0 is not node:rank'),
])
def test_bad_overrides_are_refused_clearly(override, said):
    with pytest.raises(topology.TopologyError, match=re.escape(said)):
        topology.discover(fs('one_tier'), override)


def two_tier_copy(tmp_path, **files):
    """The two_tier tree copied to ``tmp_path``, with ``files`` (paths
    below sys/devices/system/node, '__' for '/') holding other text."""
    root = tmp_path / 'two_tier'
    shutil.copytree(os.path.join(FIXTURES, 'two_tier'), root)
    for name, text in files.items():
        (root / topology.NODE_DIR / name.replace('__', '/')).write_text(text)
    return kernfs.KernelFS(str(root))


@pytest.mark.parametrize('name,text,said', [
    ('node0__distance', '10 x\n', "holds '10 x', not integers"),
    ('node0__cpulist', '0-a\n', "'0-a' is not a kernel cpu/node list"),
    ('has_memory', '0;1\n', "'0;1' is not a kernel cpu/node list"),
    ('online', 'all\n', "'all' is not a kernel cpu/node list"),
    ('node1__meminfo', 'Node 1 MemTotal:  lots kB\n',
     "'Node 1 MemTotal:  lots kB' is not"),
])
def test_malformed_integers_in_sysfs_name_the_file(tmp_path, name, text,
                                                   said):
    kfs = two_tier_copy(tmp_path, **{name: text})
    with pytest.raises(kernfs.KernelFSError) as err:
        topology.discover(kfs)
    message = str(err.value)
    assert said in message
    assert kfs.path(topology.NODE_DIR + '/' + name.replace('__', '/')) \
        in message


def test_a_malformed_tier_nodelist_names_the_file(tmp_path):
    kfs = two_tier_copy(tmp_path)
    path = kfs.path(topology.TIER_DIR + '/memory_tier4/nodelist')
    with open(path, 'w') as f:
        f.write('zero\n')
    with pytest.raises(kernfs.KernelFSError, match=re.escape(path)):
        topology.discover(kfs)


@pytest.mark.parametrize('meminfo,said', [
    ('Node 0 MemTotal:        0 kB\n',
     'DRAM (rank 0) node0 has less than 1 MiB of MemTotal'),
    ('Node 0 MemTotal:        512 kB\n', 'node0 has less than 1 MiB'),
    ('Node 0 MemTotal:        -1048576 kB\n', 'MemTotal of -1048576 kB, '
                                              'less than 0'),
    ('Node 0 MemFree:         786432 kB\n', 'has no MemTotal line'),
])
def test_a_dram_node_without_memory_is_refused(tmp_path, meminfo, said):
    kfs = two_tier_copy(tmp_path, node0__meminfo=meminfo)
    with pytest.raises(topology.TopologyError) as err:
        topology.discover(kfs)
    assert said in str(err.value)
    assert kfs.path(topology.NODE_DIR + '/node0/meminfo') in str(err.value)


def test_a_slow_node_without_memory_as_dram_is_refused_too(tmp_path):
    # node_tiers can rank any node DRAM
    kfs = two_tier_copy(tmp_path, node1__meminfo='Node 1 MemTotal: 0 kB\n')
    assert topology.discover(kfs).fast_mb == 1024
    with pytest.raises(topology.TopologyError) as err:
        topology.discover(kfs, {'0': '1', '1': '0'})
    assert 'DRAM (rank 0) node1 has less than 1 MiB' in str(err.value)
    assert str(err.value).endswith('only nodes with memory in node_tiers')


@pytest.mark.parametrize('reserve,refused', [(1023, False), (1024, True),
                                             (4096, True)])
def test_a_dram_reserve_at_or_above_the_capacity_is_refused(reserve,
                                                            refused):
    topo = topology.discover(fs('two_tier'))
    if not refused:
        topology.check_dram_reserve(topo, reserve)
        return
    with pytest.raises(topology.TopologyError) as err:
        topology.check_dram_reserve(topo, reserve)
    assert str(err.value).startswith(
        '[memtier] dram_reserve_mb = %d is at or above the DRAM capacity '
        'of this host, 1024 MiB (node 0)' % reserve)
    assert 'Set it below 1024' in str(err.value)


def test_kernfs_refuses_damon_writes_without_permission(tmp_path):
    damon = tmp_path / 'sys/kernel/mm/damon/admin/kdamonds'
    damon.mkdir(parents=True)
    (damon / 'nr_kdamonds').write_text('1\n')
    k = kernfs.KernelFS(str(tmp_path))
    with pytest.raises(PermissionError, match='refusing to write'):
        k.write_text('sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds', 0)
    with pytest.raises(PermissionError):
        k.open('/sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds', 'wb')
    for sneaky in ('./sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds',
                   'sys//kernel/mm/damon/admin/kdamonds/nr_kdamonds',
                   'sys/kernel/../kernel/mm/damon/admin/kdamonds/nr_kdamonds'):
        with pytest.raises(PermissionError):
            k.write_text(sneaky, 0)
    with pytest.raises(PermissionError):
        k.open('sys/kernel/mm/damon/new', 'xb')
    assert (damon / 'nr_kdamonds').read_text() == '1\n'
    assert not (damon.parent.parent / 'new').exists()


def test_the_machines_damon_is_off_limits_to_the_test_suite(tmp_path):
    # tests/conftest.py sets it for every test outside the sandbox guest.
    assert os.environ.get(kernfs.NO_MACHINE_DAMON_ENV) == '1'
    # Even the DAMON tracker's permission does not open the machine's DAMON
    # (a name that does not exist: were the guard missing, the write would
    # fail on its own, with another error, and change nothing).
    machine = kernfs.KernelFS('/', allow_damon_writes=True)
    for mode in ('wb', 'ab'):
        with pytest.raises(PermissionError, match='off limits'):
            machine.open('sys/kernel/mm/damon/loki-guard-probe', mode)
    with pytest.raises(PermissionError, match='off limits'):
        machine.write_text('sys/kernel/mm/damon/loki-guard-probe', 0)
    # Nor the machine's tracefs, where DAMON's trace would be read.
    for tracefs in kernfs.TRACEFS_DIRS:
        probe = tracefs + '/instances/loki-guard-probe'
        with pytest.raises(PermissionError, match='off limits'):
            machine.mkdir(probe)
        with pytest.raises(PermissionError, match='off limits'):
            machine.write_text(probe + '/buffer_size_kb', 4)
        with pytest.raises(PermissionError, match='off limits'):
            machine.rmdir(probe)
    # A DAMON tree below another root is the tracker's to write.
    damon = tmp_path / 'sys/kernel/mm/damon/admin/kdamonds'
    damon.mkdir(parents=True)
    (damon / 'nr_kdamonds').write_text('1\n')
    kernfs.KernelFS(str(tmp_path), allow_damon_writes=True).write_text(
        'sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds', 0)
    assert (damon / 'nr_kdamonds').read_text() == '0'


def test_kernfs_errors_name_the_file(tmp_path):
    k = kernfs.KernelFS(str(tmp_path))
    with pytest.raises(kernfs.KernelFSError, match='missing/file'):
        k.read_text('missing/file')
    (tmp_path / 'x').write_text('nope')
    with pytest.raises(kernfs.KernelFSError, match="holds 'nope'"):
        k.read_int('x')


def test_process_start_time_and_maps_of_this_process():
    k = kernfs.KernelFS()
    start = k.process_start_time(os.getpid())
    assert start > 0 and start == k.process_start_time(os.getpid())
    maps = k.process_maps(os.getpid())
    assert any(m.path.endswith('python3.11') or 'python' in m.path
               for m in maps)
    assert all(m.end > m.start for m in maps)
    with pytest.raises(ProcessLookupError):
        k.process_start_time(2 ** 22 + 12345)


@pytest.mark.parametrize('balancing,demotion,want', [
    (None, None, []),
    ('0', 'false', []),
    ('1', 'false', ['kernel.numa_balancing = 1: NUMA balancing']),
    ('2', 'false', ['kernel.numa_balancing = 2 includes']),
    ('3', 'true', ['kernel.numa_balancing = 3 includes',
                   'demotion_enabled is true']),
    ('0', 'true', ['demotion_enabled is true']),
])
def test_kernel_tiering_that_competes_with_the_agent_is_named(
        tmp_path, balancing, demotion, want):
    files = {topology.NUMA_BALANCING: balancing,
             topology.DEMOTION_ENABLED: demotion}
    for rel, value in files.items():
        if value is not None:
            path = tmp_path / rel.lstrip('/')
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value + '\n')
    found = topology.kernel_tiering_conflicts(kernfs.KernelFS(str(tmp_path)))
    assert len(found) == len(want)
    for sentence, start in zip(found, want):
        assert start in sentence
        assert 'leave tiering to the agent' in sentence
