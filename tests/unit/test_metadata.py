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

"""The loki policy in libvirt domain metadata."""

import xml.etree.ElementTree as ET

import libvirt
import pytest

from loki_nova.memtier import guest
from loki_nova.memtier import metadata

NS = metadata.NAMESPACE
ON_DEMAND = guest.Policy('on_demand', 512, 2048)
STATIC = guest.Policy('static', 64)


def element(*children, root='loki:memtier'):
    body = ''.join('<loki:%s>%s</loki:%s>' % (n, v, n) for n, v in children)
    return '<%s xmlns:loki="%s">%s</%s>' % (root, NS, body, root)


def test_constants():
    assert NS == 'http://loki-nova.org/xmlns/memtier/1.0'
    assert metadata.PREFIX == 'loki'
    assert metadata.ELEMENT == 'memtier'


def test_to_xml_on_demand_is_the_documented_element():
    assert metadata.to_xml(ON_DEMAND) == (
        '<loki:memtier xmlns:loki="%s">\n'
        '  <loki:policy>on_demand</loki:policy>\n'
        '  <loki:dram_floor_mb>512</loki:dram_floor_mb>\n'
        '  <loki:dram_ceiling_mb>2048</loki:dram_ceiling_mb>\n'
        '</loki:memtier>\n' % NS)


def test_to_xml_static_has_no_ceiling():
    text = metadata.to_xml(STATIC)
    root = ET.fromstring(text)
    assert root.tag == '{%s}memtier' % NS
    assert [c.tag.split('}')[1] for c in root] == ['policy', 'dram_floor_mb']
    assert 'ceiling' not in text


def test_to_xml_bare_has_no_namespace():
    text = metadata.to_xml(ON_DEMAND, bare=True)
    assert 'loki' not in text and 'xmlns' not in text
    assert metadata.from_xml(text) == ON_DEMAND


def test_to_xml_refuses_other_types():
    with pytest.raises(TypeError, match='guest.Policy'):
        metadata.to_xml({'policy': 'static', 'floor_mb': 1})


@pytest.mark.parametrize('policy', [
    ON_DEMAND, STATIC, guest.Policy('static', 0),
    guest.Policy('on_demand', 0, 0), guest.Policy('on_demand', 7, 7)])
def test_round_trip(policy):
    assert metadata.from_xml(metadata.to_xml(policy)) == policy


def test_from_xml_accepts_what_libvirt_returns():
    # virDomainGetMetadata strips the namespace.
    text = ('<memtier>\n  <policy>static</policy>\n'
            '  <dram_floor_mb> 64\n</dram_floor_mb>\n</memtier>')
    assert metadata.from_xml(text) == STATIC


def test_from_xml_accepts_other_prefix_same_namespace():
    text = ('<x:memtier xmlns:x="%s"><x:policy>static</x:policy>'
            '<x:dram_floor_mb>64</x:dram_floor_mb></x:memtier>' % NS)
    assert metadata.from_xml(text) == STATIC


@pytest.mark.parametrize('text, message', [
    ('<loki:memtier', 'not a well-formed XML element'),
    ('', 'not a well-formed XML element'),
    (None, 'not a well-formed XML element'),
    (element(('policy', 'static'), ('dram_floor_mb', '1'), root='loki:tier'),
     r'expected a <loki:memtier> element in namespace '
     r'http://loki-nova.org/xmlns/memtier/1.0, got <\{%s\}tier>' % NS),
    ('<memtier xmlns="http://example.com/other"><policy>static</policy>'
     '<dram_floor_mb>1</dram_floor_mb></memtier>',
     'expected a <loki:memtier> element'),
    (element(('dram_floor_mb', '1')), '<loki:policy> is missing'),
    (element(('policy', 'static')), '<loki:dram_floor_mb> is missing'),
    (element(('policy', 'none'), ('dram_floor_mb', '1')),
     "<loki:policy> must be one of static, on_demand, got 'none'"),
    (element(('policy', ''), ('dram_floor_mb', '1')),
     "<loki:policy> must be one of static, on_demand, got ''"),
    (element(('policy', 'static'), ('dram_floor_mb', '-1')),
     r"<loki:dram_floor_mb> must be a whole number of MiB \(like 512\), "
     r"got '-1'"),
    (element(('policy', 'static'), ('dram_floor_mb', '1.5')),
     "got '1.5'"),
    (element(('policy', 'static'), ('dram_floor_mb', '1_000')),
     "got '1_000'"),
    (element(('policy', 'static'), ('dram_floor_mb', '')),
     r"<loki:dram_floor_mb> must be a whole number of MiB \(like 512\), "
     r"got ''"),
    (element(('policy', 'on_demand'), ('dram_floor_mb', '1')),
     'an on_demand policy needs <loki:dram_ceiling_mb>'),
    (element(('policy', 'on_demand'), ('dram_floor_mb', '8'),
             ('dram_ceiling_mb', '4')),
     r'<loki:dram_ceiling_mb> \(4\) must be >= <loki:dram_floor_mb> \(8\)'),
    (element(('policy', 'on_demand'), ('dram_floor_mb', '8'),
             ('dram_ceiling_mb', 'lots')),
     "<loki:dram_ceiling_mb> must be a whole number of MiB"),
    (element(('policy', 'static'), ('dram_floor_mb', '8'),
             ('dram_ceiling_mb', '16')),
     '<loki:dram_ceiling_mb> is only valid with policy on_demand, '
     'not static'),
    (element(('policy', 'static'), ('dram_flor_mb', '8')),
     r'unknown element <\{%s\}dram_flor_mb> in <loki:memtier>; valid '
     r'elements are <loki:policy>, <loki:dram_floor_mb>, '
     r'<loki:dram_ceiling_mb>' % NS),
    (element(('policy', 'static'), ('dram_floor_mb', '8'),
             ('dram_floor_mb', '9')),
     '<loki:dram_floor_mb> appears more than once'),
    (element(('policy', '<loki:x>static</loki:x>'), ('dram_floor_mb', '8')),
     '<loki:policy> must hold text only'),
])
def test_from_xml_malformed_names_element_and_valid_values(text, message):
    with pytest.raises(ValueError, match=message):
        metadata.from_xml(text)


def test_from_xml_refuses_child_in_another_namespace():
    text = ('<memtier xmlns:o="http://example.com/o"><policy>static</policy>'
            '<dram_floor_mb>1</dram_floor_mb><o:extra>1</o:extra></memtier>')
    with pytest.raises(ValueError, match='unknown element'):
        metadata.from_xml(text)


# libvirt's built-in test driver parses and keeps metadata the way libvirtd
# does: both ways the driver may store the policy must read back.

DOMAIN = ("<domain type='test'><name>%s</name>"
          "<memory unit='MiB'>128</memory><os><type>hvm</type></os>"
          "%s</domain>")


@pytest.fixture
def test_conn():
    conn = libvirt.open('test:///default')
    yield conn
    conn.close()


def test_libvirt_keeps_metadata_from_domain_xml(test_conn):
    dom = test_conn.defineXML(DOMAIN % (
        'loki-md-xml', '<metadata>%s</metadata>' % metadata.to_xml(ON_DEMAND)))
    text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS)
    assert metadata.from_xml(text) == ON_DEMAND
    assert '<loki:memtier xmlns:loki="%s">' % NS in dom.XMLDesc()


def test_libvirt_set_metadata_takes_the_bare_form(test_conn):
    dom = test_conn.defineXML(DOMAIN % ('loki-md-set', ''))
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    metadata.to_xml(STATIC, bare=True), metadata.PREFIX, NS,
                    libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS)
    assert metadata.from_xml(text) == STATIC
    assert '<loki:policy>static</loki:policy>' in dom.XMLDesc()
