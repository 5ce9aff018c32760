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

"""What the agent refuses at start: options no loop can run with, and a
DRAM reserve that leaves guests no DRAM, each with one line naming it.
(A DRAM node without memory and malformed sysfs files are in
test_topology.py.)"""

import logging

import pytest

from loki_nova.memtier import agent as agent_mod
from loki_nova.memtier import topology
from tests.unit.test_agent import hot_first
from tests.unit.test_agent import make_agent
from tests.unit.test_agent import make_conf
from tests.unit.test_agent import run_service


@pytest.mark.parametrize('name,value', [('interval', 'nan'),
                                        ('usage_interval', 'inf')])
def test_service_refuses_non_finite_seconds_in_one_line(tmp_path, name,
                                                        value):
    res = run_service(tmp_path, '[memtier]\n%s = %s\n'
                                'tracker = soft_dirty\n' % (name, value))
    assert res.returncode == 1, res.stdout
    said = [line for line in res.stdout.splitlines() if 'cannot start' in line]
    assert len(said) == 1, res.stdout
    assert 'option %s ' % name in said[0]
    assert 'must be a finite number' in said[0] and value in said[0]
    assert 'Traceback' not in res.stdout


@pytest.mark.parametrize('reserve', [1024, 100000])
def test_a_dram_reserve_leaving_no_dram_is_refused(tmp_path, reserve):
    # the fixture's DRAM tier is node 0, 1024 MiB
    with pytest.raises(topology.TopologyError,
                       match=r'dram_reserve_mb = %d is at or above the DRAM '
                             r'capacity of this host, 1024 MiB' % reserve):
        make_agent(make_conf(tmp_path, dram_reserve_mb=reserve),
                   hot_first(4))


def test_a_dram_reserve_below_the_capacity_is_taken(tmp_path):
    agent = make_agent(make_conf(tmp_path, dram_reserve_mb=1023),
                       hot_first(4))
    assert agent.conf.dram_reserve_mb == 1023
    agent.close()


def test_a_damon_aggregation_shorter_than_its_sample_is_refused(tmp_path):
    # The fixture's topology and a replay tracker: no kernel is touched.
    with pytest.raises(ValueError,
                       match=r'damon_aggr_us \(1000\) must be at least '
                             r'damon_sample_us \(5000\)'):
        make_agent(make_conf(tmp_path, tracker='damon',
                             damon_sample_us=5000, damon_aggr_us=1000),
                   hot_first(4))


def test_damon_intervals_left_unset_are_the_trackers_and_long_ones_warn(
        tmp_path, caplog):
    # Unset, damon_aggr_us is the tracker's per source: nothing to check.
    conf = make_conf(tmp_path, tracker='damon')
    assert conf.damon_aggr_us is None and conf.damon_source == 'trace'
    assert conf.damon_sample_us is None
    agent_mod.check_damon_intervals(conf)
    assert 'damon_aggr_us' not in caplog.text
    # An aggregation set with the sampling left to the tracker (which
    # keeps its default within it): nothing to refuse.
    conf = make_conf(tmp_path, tracker='damon', damon_aggr_us=20000)
    agent_mod.check_damon_intervals(conf)
    assert 'damon_aggr_us' not in caplog.text
    # ... unless it is shorter than the least default sampling.
    with pytest.raises(ValueError,
                       match=r'damon_aggr_us \(4000\) must be at least '
                             r'damon_sample_us \(5000 when unset\)'):
        agent_mod.check_damon_intervals(
            make_conf(tmp_path, tracker='damon', damon_aggr_us=4000))
    # Longer than the interval: each source says what it costs.
    for source, why in (('trace', 'some intervals see no aggregation of a '
                                  'guest'),
                        ('tried_regions', 'each interval waits that long')):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            agent_mod.check_damon_intervals(make_conf(
                tmp_path, tracker='damon', interval=1.0,
                damon_aggr_us=2000000, damon_source=source))
        assert why in caplog.text, source
