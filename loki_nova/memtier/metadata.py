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

"""A guest's tiering policy in its libvirt domain ``<metadata>``.

The Nova driver writes it into the domain XML, the agent's libvirt watcher
reads it back; the domain is the only place the policy is stored::

    <loki:memtier xmlns:loki="http://loki-nova.org/xmlns/memtier/1.0">
      <loki:policy>on_demand</loki:policy>
      <loki:dram_floor_mb>512</loki:dram_floor_mb>
      <loki:dram_ceiling_mb>2048</loki:dram_ceiling_mb>
    </loki:memtier>

``dram_ceiling_mb`` is present for ``on_demand`` only.  A domain without
this element is not a tiered guest.

libvirt hands the element back from ``virDomainGetMetadata`` with the
namespace stripped (``<memtier><policy>...``), so ``from_xml`` accepts the
element both in the loki namespace and without any namespace; any other
namespace is an error.  Unknown child elements are errors too: a typo must
not silently turn into a default.  A future incompatible layout gets a new
namespace URI.
"""

import re
import xml.etree.ElementTree as ET

from loki_nova.memtier import guest

NAMESPACE = 'http://loki-nova.org/xmlns/memtier/1.0'
PREFIX = 'loki'
ELEMENT = 'memtier'

POLICY = 'policy'
FLOOR = 'dram_floor_mb'
CEILING = 'dram_ceiling_mb'
_CHILDREN = (POLICY, FLOOR, CEILING)
_INTEGER = re.compile(r'^[0-9]+$')


def to_xml(policy, bare=False):
    """The ``<loki:memtier>`` element for ``policy`` (a ``guest.Policy``),
    ready to embed in a domain's ``<metadata>``.

    ``bare=True`` gives the same element without namespace
    (``<memtier>...``): the form ``virDomainSetMetadata`` wants, with key
    ``PREFIX`` and uri ``NAMESPACE`` (libvirt adds the namespace itself and
    refuses an element that already declares it)."""
    if not isinstance(policy, guest.Policy):
        raise TypeError('to_xml needs a guest.Policy, got %r' % (policy,))

    def q(name):
        return name if bare else '%s:%s' % (PREFIX, name)

    def leaf(name, value):
        return '  <%s>%s</%s>' % (q(name), value, q(name))

    head = q(ELEMENT) if bare else '%s xmlns:%s="%s"' % (
        q(ELEMENT), PREFIX, NAMESPACE)
    lines = ['<%s>' % head, leaf(POLICY, policy.policy),
             leaf(FLOOR, policy.floor_mb)]
    if policy.policy == 'on_demand':
        lines.append(leaf(CEILING, policy.ceiling_mb))
    lines.append('</%s>' % q(ELEMENT))
    return '\n'.join(lines) + '\n'


def _q(name):
    return '%s:%s' % (PREFIX, name)


def _local(tag):
    """``tag`` without the loki namespace, or None when it is in another
    namespace."""
    if tag.startswith('{'):
        uri, _, name = tag[1:].partition('}')
        return name if uri == NAMESPACE else None
    return tag


def _integer(name, text):
    value = (text or '').strip()
    if not _INTEGER.match(value):
        raise ValueError('loki metadata: <%s> must be a whole number of MiB '
                         '(like 512), got %r' % (_q(name), text or ''))
    return int(value)


def from_xml(text):
    """The ``guest.Policy`` in a ``<loki:memtier>`` element.

    Raises ``ValueError`` naming the offending element and what would be
    valid when the metadata is malformed."""
    try:
        root = ET.fromstring(text)
    except (ET.ParseError, TypeError) as exc:
        raise ValueError('loki metadata is not a well-formed XML element '
                         '(%s): %r' % (exc, text)) from None
    if _local(root.tag) != ELEMENT:
        raise ValueError('loki metadata: expected a <%s> element in '
                         'namespace %s, got <%s>'
                         % (_q(ELEMENT), NAMESPACE, root.tag))
    values = {}
    for child in root:
        name = _local(child.tag)
        if name not in _CHILDREN:
            raise ValueError('loki metadata: unknown element <%s> in <%s>; '
                             'valid elements are %s'
                             % (child.tag, _q(ELEMENT),
                                ', '.join('<%s>' % _q(c) for c in _CHILDREN)))
        if name in values:
            raise ValueError('loki metadata: <%s> appears more than once'
                             % _q(name))
        if len(child):
            raise ValueError('loki metadata: <%s> must hold text only, not '
                             'elements' % _q(name))
        values[name] = child.text
    for name in (POLICY, FLOOR):
        if name not in values:
            raise ValueError('loki metadata: <%s> is missing from <%s>'
                             % (_q(name), _q(ELEMENT)))
    policy = (values[POLICY] or '').strip()
    if policy not in guest.POLICIES:
        raise ValueError('loki metadata: <%s> must be one of %s, got %r'
                         % (_q(POLICY), ', '.join(guest.POLICIES),
                            values[POLICY] or ''))
    floor = _integer(FLOOR, values[FLOOR])
    ceiling = None
    if policy == 'on_demand':
        if CEILING not in values:
            raise ValueError('loki metadata: an on_demand policy needs '
                             '<%s>' % _q(CEILING))
        ceiling = _integer(CEILING, values[CEILING])
        if ceiling < floor:
            raise ValueError('loki metadata: <%s> (%d) must be >= <%s> (%d)'
                             % (_q(CEILING), ceiling, _q(FLOOR), floor))
    elif CEILING in values:
        raise ValueError('loki metadata: <%s> is only valid with policy '
                         'on_demand, not %s' % (_q(CEILING), policy))
    return guest.Policy(policy, floor, ceiling)
