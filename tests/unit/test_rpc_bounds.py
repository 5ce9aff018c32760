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

"""What a caller sends the agent over RPC comes back and goes to the log
bounded in length and on one line: no value, however long or whatever it
holds, can flood an answer or forge a log line.  Over the in-memory
transport with the real agent loop (tests/agentbus.py)."""

import logging
import uuid

import pytest

from loki_nova.memtier import rpc
from tests.agentbus import HOST
from tests.agentbus import make_conf
from tests.agentbus import Running

FORGED = '\n2026-01-01 00:00:00.000 1 ERROR nova [-] forged line'
#: An answer's text about one bounded value stays well under this.
SHORT = 400


def raw_call(running, ctxt, method, **kwargs):
    """``method`` called as any client could, past AgentClient's own
    arithmetic on the arguments."""
    cctxt = running.client.client.prepare(server=HOST, timeout=30)
    return cctxt.call(ctxt, method, **kwargs)


def agent_lines(caplog):
    """Messages the agent's own loggers wrote."""
    return [r.getMessage() for r in caplog.records
            if r.name.startswith('loki_nova')]


def assert_one_line_each(lines):
    for line in lines:
        assert '\n' not in line and '\r' not in line, line
        assert 'forged line' not in line or '\\n' in line, line


@pytest.mark.parametrize('value,shown', [
    ('abc', 'abc'),
    ('a\nb\r\x1b[31m\u2028\u202ec', 'a\\nb\\r\\x1b[31m\\u2028\\u202ec'),
    ('caf\xe9', 'caf\xe9'),
    (None, 'None'),
    (['x', 1], "['x', 1]"),
    ('y' * 100, 'y' * 80 + '... (100 characters)'),
    (10 ** 5000, '<an integer of 16610 bits>'),
], ids=['plain', 'controls', 'non-ascii', 'none', 'list', 'long',
        'huge-int'])
def test_shown_is_one_bounded_printable_line(value, shown):
    assert rpc.shown(value) == shown


def test_long_and_multi_line_values_are_bounded_in_answers_and_logs(
        tmp_path, caplog):
    caplog.set_level(logging.INFO)
    huge = 'u' * 100000 + FORGED
    good = str(uuid.uuid4())
    with Running(make_conf(tmp_path)) as r:
        call = r.client.reserve_dram
        bad_uuid = call({'request_id': 'req-1' + FORGED}, HOST, huge, 10, 5)
        bad_mb = call({}, HOST, good, 'M' * 100000 + FORGED, 5)
        bad_timeout = raw_call(r, {}, 'reserve_dram', instance_uuid=good,
                               mb=10, timeout=FORGED * 1000)
        # a MiB count no host has, and 401 digits long
        huge_mb = call({}, HOST, good, 10 ** 400, 5)
        released = r.client.release_dram({}, HOST, FORGED)
        with pytest.raises(rpc.GuestNotManaged) as stats:
            r.client.guest_stats({}, HOST, 'g' * 100000 + FORGED)
        with pytest.raises(rpc.GuestNotManaged) as heat:
            r.client.guest_heat({}, HOST, FORGED)
        held = dict(r.agent.reservations)
    assert held == {}
    for answer, named in ((bad_uuid, 'instance_uuid'), (bad_mb, 'mb must'),
                          (bad_timeout, 'timeout must'),
                          (huge_mb, 'mb must'),
                          (released, 'instance_uuid')):
        assert answer['status'] == rpc.INVALID, answer
        assert named in answer['reason']
        assert len(answer['reason']) < SHORT, answer['reason']
        assert len(str(answer['instance_uuid'])) < SHORT
        assert len(str(answer['mb'])) < SHORT
        assert '\n' not in answer['reason'] + str(answer['instance_uuid'])
    assert '... (%d characters)' % len(huge) in bad_uuid['reason']
    assert 'got \'1000' in huge_mb['reason']
    assert '... (401 characters)' in huge_mb['reason']
    for exc in (stats.value, heat.value):
        assert len(str(exc)) < SHORT and '\n' not in str(exc)
        assert 'is not a tiered guest' in str(exc)
    lines = agent_lines(caplog)
    assert any('by request req-1\\n2026' in line for line in lines), lines
    assert any('release_dram(\\n2026' in line for line in lines), lines
    assert_one_line_each(lines)
    assert max(len(line) for line in lines) < 2 * SHORT


def test_a_valid_request_is_passed_on_unchanged(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    instance = uuid.uuid4()
    with Running(make_conf(tmp_path)) as r:
        answer = r.client.reserve_dram(
            {'request_id': 'req-7'}, HOST, str(instance).upper(), 10, 5)
    assert answer['instance_uuid'] == str(instance)
    assert answer['mb'] == 10 and answer['status'] == rpc.OK
    assert any('reserve_dram(%s, 10 MiB, timeout 5 s) requested by request '
               'req-7' % str(instance).upper() in line
               for line in agent_lines(caplog))
