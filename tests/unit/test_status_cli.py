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

"""``loki-memtier status`` and ``heatmap`` against the real agent loop and
RPC server running in this process on the in-memory transport (see
tests/agentbus.py for the stand-ins); the CLI reads the same
configuration file the agent was started with."""

import json

import numpy as np
import pytest

from loki_nova.cmd import memtier
from tests.agentbus import make_conf
from tests.agentbus import NODE_FREE_MB
from tests.agentbus import Running
from tests import workloads


@pytest.fixture
def agent(tmp_path):
    reg = str(tmp_path / 'guests')
    with workloads.Workload('--size-mb', 32, '--hot-mb', 4,
                            '--register-dir', reg, '--name', 'static1',
                            '--floor-mb', 8), \
            workloads.Workload('--size-mb', 32, '--hot-mb', 4,
                               '--register-dir', reg, '--name', 'od1',
                               '--policy', 'on_demand', '--floor-mb', 4,
                               '--ceiling-mb', 24), \
            Running(make_conf(tmp_path)) as running:
        running.wait_interval(3)
        yield running, str(tmp_path / 'memtier.conf')


def test_status_table_and_json(agent, capsys):
    running, conf = agent
    assert memtier.main(['status', '--config-file', conf, '--json']) == 0
    stats = json.loads(capsys.readouterr().out)
    assert [g['instance_uuid'] for g in stats['guests']] == ['od1',
                                                             'static1']
    # Capacity and free memory from the fixture's sysfs.
    dram, slow = stats['tiers']
    assert dram == {'rank': 0, 'nodes': [0], 'capacity_mb': 1024,
                    'free_mb': NODE_FREE_MB}
    assert slow == {'rank': 1, 'nodes': [1], 'capacity_mb': 1024,
                    'free_mb': NODE_FREE_MB}
    assert memtier.main(['status', '--config-file', conf]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert '  DRAM    nodes 0            1024 MiB, free 768 MiB\n' in out
    # (the test configuration keeps no DRAM free for the host: 768 MiB
    # free is room enough for every wish)
    assert stats['dram_free_min_mb'] == 0
    assert stats['held_back_by_free_dram'] is False
    assert 'host reserve 0 MiB DRAM, 0 MiB kept free):' in out
    assert '  slow 1  nodes 1            1024 MiB, free 768 MiB\n' in out
    header = next(i for i, line in enumerate(lines)
                  if line.split()[:2] == ['INSTANCE', 'POLICY'])
    rows = {line.split()[0]: line.split() for line in lines[header + 1:]}
    # policy, floor, budget, DRAM, slow: the agent's figures
    assert rows['od1'][1:6] == ['on_demand', '4', '24', '24', '8']
    assert rows['static1'][1:6] == ['static', '8', '8', '8', '24']


def test_status_says_when_on_demand_guests_are_held_back():
    from loki_nova.cmd import status
    stats = {'interval': 7, 'interval_s': 5.0, 'dram_reserve_mb': 2048,
             'dram_free_min_mb': 1024, 'held_back_by_free_dram': True,
             'tiers': [], 'reservations': [], 'guests': []}
    assert 'host reserve 2048 MiB DRAM, 1024 MiB kept free (on-demand ' \
        'guests held back for it)):' in status.format_status(stats)
    stats['held_back_by_free_dram'] = False
    assert '1024 MiB kept free):' in status.format_status(stats)
    # An agent from before dram_free_min_mb says nothing of it.
    del stats['dram_free_min_mb'], stats['held_back_by_free_dram']
    assert 'host reserve 2048 MiB DRAM):' in status.format_status(stats)


def test_heatmap_png(agent, tmp_path, capsys):
    running, conf = agent
    out = tmp_path / 'od1.png'
    assert memtier.main(['heatmap', 'od1', '--config-file', conf,
                         '--output', str(out)]) == 0
    assert 'written to %s' % out in capsys.readouterr().out
    from matplotlib import image
    png = image.imread(str(out))
    assert png.shape[0] >= 400 and png.shape[1] >= 800
    assert np.ptp(png[..., :3]) > 0.5     # not a blank picture


def test_unknown_guest_and_absent_agent_are_explained(agent, capsys):
    running, conf = agent
    assert memtier.main(['heatmap', 'nobody', '--config-file', conf,
                         '-o', '/dev/null']) == 1
    assert 'not a tiered guest of this host' in capsys.readouterr().err
    assert memtier.main(['status', '--config-file', conf, '--host',
                         'elsewhere', '--timeout', '1']) == 1
    err = capsys.readouterr().err
    assert 'no answer from loki-memtier-agent on elsewhere' in err
    assert 'is it running' in err


def test_a_missing_config_file_is_named(capsys):
    with pytest.raises(SystemExit) as exc:
        memtier.main(['status', '--config-file', '/nonexistent.conf'])
    assert exc.value.code == 2
    assert '/nonexistent.conf does not exist' in capsys.readouterr().err
