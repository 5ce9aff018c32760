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

"""The live-migration rewrite of a guest's numatune on its own, for node
layouts the harness hosts do not have (a destination DRAM node numbered
like a source slow node)."""

from lxml import etree
from nova import exception
import pytest

from loki_nova.virt import driver
from tests.nova import base

SOURCE = {'fast': [0, 1], 'slow': [2]}
# Four DRAM nodes, slow memory on node 4: node 2 is DRAM here.
WIDE = {'fast': [0, 1, 2, 3], 'slow': [4]}


def domain(memory, memnodes=(), backing=True):
    tune = "<memory mode='%s' nodeset='%s'/>" % memory + ''.join(
        "<memnode cellid='%d' mode='%s' nodeset='%s'/>" % m
        for m in memnodes)
    mb = ("<memoryBacking><source type='memfd'/><access mode='shared'/>"
          "</memoryBacking>") if backing else ''
    return ("<domain type='kvm'><name>g</name><memory>1048576</memory>%s"
            "<numatune>%s</numatune></domain>" % (mb, tune))


def rewrite(xml, **kwargs):
    return etree.fromstring(driver.rewrite_numatune(xml, **kwargs))


def test_numa_guest_keeps_nova_dram_cell_that_shares_a_slow_number():
    # Nova already pointed the guest cell at destination DRAM cell 2.
    xml = domain(('restrictive', '2'), [(0, 'restrictive', '2')],
                 backing=False)
    root = rewrite(xml, numa_guest=True, tiered=True, source=SOURCE,
                   destination=WIDE)
    assert base.numatune(root) == ('restrictive', '2,4',
                                   {0: ('restrictive', '2,4')})
    assert base.memory_backing(root) == ('memfd', 'shared')


def test_numa_guest_without_nova_dram_cell_gets_all_dram():
    xml = domain(('restrictive', '7'), [(0, 'restrictive', '7')])
    root = rewrite(xml, numa_guest=True, tiered=True, source=SOURCE,
                   destination=WIDE)
    assert base.numatune(root)[2] == {0: ('restrictive', '0-4')}


def test_untiered_numa_guest_to_plain_host_is_left_as_nova_wrote_it():
    xml = domain(('strict', '2'), [(0, 'strict', '2')], backing=False)
    root = rewrite(xml, numa_guest=True, tiered=False, source=SOURCE,
                   destination=None)
    assert base.numatune(root) == ('strict', '2', {0: ('strict', '2')})


def test_untiered_plain_guest_loses_loki_numatune_on_plain_host():
    xml = domain(('strict', '0-1'), backing=False)
    root = rewrite(xml, numa_guest=False, tiered=False, source=SOURCE,
                   destination=None)
    assert root.find('numatune') is None


def test_plain_tiered_guest_gets_destination_nodes():
    xml = domain(('restrictive', '0-2'))
    root = rewrite(xml, numa_guest=False, tiered=True, source=SOURCE,
                   destination=WIDE)
    assert base.numatune(root)[:2] == ('restrictive', '0-4')


@pytest.mark.parametrize('destination', [None, {'fast': [0], 'slow': []}])
def test_tiered_guest_needs_a_tiered_destination(destination):
    with pytest.raises(exception.MigrationError, match='no slow memory'):
        driver.rewrite_numatune(domain(('restrictive', '0-2')),
                                numa_guest=False, tiered=True,
                                source=SOURCE, destination=destination)
