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

"""The agent's RPC API and usage notifications over oslo.messaging's
in-memory transport (``fake://``), with the real agent loop running in a
thread over real workload processes (process watcher, the real mover in
query mode, replayed samples: see tests/unit/test_agent.py for why).
The same exchange over a real RabbitMQ is
tests/functional/test_rabbit_rpc.py."""

import logging
import threading
import time
import uuid

import numpy as np
import oslo_messaging as messaging
import pytest

from loki_nova.memtier import agent as agent_mod
from loki_nova.memtier import rpc
from tests.agentbus import all_hot
from tests.agentbus import HOST
from tests.agentbus import make_conf
from tests.agentbus import NODE_FREE_MB
from tests.agentbus import Running
from tests import workloads


def test_reserve_dram_pulls_on_demand_back_before_answering(
        tmp_path, two_guests, caplog):
    caplog.set_level(logging.INFO)
    with Running(make_conf(tmp_path, dram_reserve_mb=500)) as r:
        before = r.wait_interval(2)
        # DRAM is free: the on-demand guest holds its whole hot demand, up
        # to its ceiling; the static one exactly its floor.
        assert before.guests['od1'].budget_mb == 24
        assert before.guests['od1'].dram_mb == 24
        assert before.guests['static1'].budget_mb == 8
        new = str(uuid.uuid4())
        # Floors 8 + 4 and the host reserve 500, so 500 MiB for the new
        # guest leaves 12 spare (the fixture's 768 MiB free DRAM is
        # enough: dram_free_min_mb does not bind).
        answer = r.client.reserve_dram({'request_id': 'req-1'}, HOST, new,
                                       500, 20)
        assert answer['status'] == rpc.OK, answer
        after = r.agent.last_report
        assert after.number > before.number
        assert after.guests['od1'].budget_mb == 4 + 12
        assert after.guests['od1'].dram_mb <= 16
        assert after.guests['static1'].budget_mb == 8
        assert answer['intervals'] >= 1
        # MemFree of node 0 in the fixture's sysfs
        assert answer['fast_free_mb'] == NODE_FREE_MB
        assert [x['instance_uuid'] for x in
                r.client.host_stats({}, HOST)['reservations']] == [new]
    assert ('reserve_dram(%s, 500 MiB, timeout 20 s) requested by request '
            'req-1' % new) in caplog.text


def test_a_reservation_is_taken_up_by_the_guest_it_was_for(
        tmp_path, two_guests):
    new = str(uuid.uuid4())
    with Running(make_conf(tmp_path)) as r:
        r.wait_interval(1)
        assert r.client.reserve_dram({}, HOST, new, 64, 20)['status'] == \
            rpc.OK
        with workloads.Workload('--size-mb', 16, '--hot-mb', 4,
                                '--register-dir',
                                tmp_path / 'guests', '--name', new,
                                '--policy', 'static', '--floor-mb', 64):
            deadline = time.monotonic() + 30
            while new not in r.agent.guests or r.agent.reservations:
                assert time.monotonic() < deadline, r.agent.reservations
                time.sleep(0.02)
            again = r.client.reserve_dram({}, HOST, new, 64, 20)
            assert again['status'] == rpc.OK
            assert 'already managed' in again['reason']


def test_floors_that_leave_no_room_are_refused_and_nothing_is_held(
        tmp_path, two_guests):
    with Running(make_conf(tmp_path, dram_reserve_mb=100)) as r:
        r.wait_interval(2)
        answer = r.client.reserve_dram({}, HOST, str(uuid.uuid4()), 1000, 5)
        assert answer['status'] == rpc.INSUFFICIENT
        # 1024 - floors 12 - reserve 100 = 912 MiB left
        assert 'leave 912 MiB' in answer['reason'], answer
        assert 'nothing was reserved' in answer['reason']
        assert r.agent.reservations == {}
        assert r.agent.last_report.guests['od1'].budget_mb == 24


@pytest.mark.parametrize('args, named', [
    (('not-a-uuid', 10, 5), 'instance_uuid'),
    ((None, 10, 5), 'instance_uuid'),
    (('ok', 0, 5), 'mb must be'),
    (('ok', '10', 5), 'mb must be'),
    (('ok', 10, 0), 'timeout must be'),
    (('ok', 10, 7200), 'timeout must be'),
])
def test_bad_arguments_are_named(tmp_path, args, named):
    uuid_, mb, timeout = args
    if uuid_ == 'ok':
        uuid_ = str(uuid.uuid4())
    with Running(make_conf(tmp_path)) as r:
        answer = r.client.reserve_dram({}, HOST, uuid_, mb, timeout)
    assert answer['status'] == rpc.INVALID
    assert named in answer['reason']
    assert repr(args[0] if named == 'instance_uuid' else
                args[1] if named.startswith('mb') else args[2]) in \
        answer['reason']
    assert r.agent.reservations == {}


def test_a_guest_that_cannot_be_measured_is_named_in_a_prompt_answer(
        tmp_path, two_guests):
    def source(g, layout, n):
        if g.key == 'od1' and n >= 2:
            raise RuntimeError('tracker broke for od1')
        return all_hot(g, layout, n)
    new = str(uuid.uuid4())
    with Running(make_conf(tmp_path), source) as r:
        r.wait_interval(3)
        answer = r.client.reserve_dram({}, HOST, new, 500, 20)
        assert answer['status'] == rpc.TIMEOUT
        # answered after agent.UNMEASURED_INTERVALS intervals (0.5 s
        # each), not after the caller's 20 s
        assert answer['waited_s'] < 10, answer
        assert answer['intervals'] == agent_mod.UNMEASURED_INTERVALS
        assert 'od1 was not measured (tracker broke for od1)' in \
            answer['reason'], answer
        assert 'stays until the guest appears' in answer['reason']
        # still held, so the on-demand guest's share stays cut
        assert new in r.agent.reservations


def test_a_hung_measurement_is_named_and_does_not_hold_the_caller(
        tmp_path, two_guests):
    unblock = threading.Event()

    def source(g, layout, n):
        if g.key == 'od1' and n >= 2:
            unblock.wait(60)    # a read of a guest that never returns
        return all_hot(g, layout, n)
    new = str(uuid.uuid4())
    with Running(make_conf(tmp_path), source) as r:
        try:
            r.wait_interval(2)
            answer = r.client.reserve_dram({}, HOST, new, 100, 20)
            # the stats calls still answer: no RPC thread is held
            held = r.client.host_stats({}, HOST)['reservations']
        finally:
            unblock.set()
    assert answer['status'] == rpc.TIMEOUT
    # a step counts as hung after STUCK_INTERVALS intervals of 0.5 s
    assert answer['waited_s'] < 10, answer
    assert 'has been measuring guest od1 for' in answer['reason'], answer
    assert 'the reservation stays' in answer['reason']
    assert [x['instance_uuid'] for x in held] == [new]


def test_a_flood_of_reservations_wakes_the_loop_once_per_spacing(
        tmp_path, two_guests):
    answers = []
    flood_s = 3.0

    def flood():
        mine = str(uuid.uuid4())
        end = time.monotonic() + flood_s
        while time.monotonic() < end:
            answers.append(r.client.reserve_dram({}, HOST, mine, 1, 20))

    # The regular interval is far away: every interval here is an early one.
    with Running(make_conf(tmp_path, interval=60)) as r:
        before = r.wait_interval(1).number
        started = time.monotonic()
        threads = [threading.Thread(target=flood) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ran = r.agent.number - before
        elapsed = time.monotonic() - started
    assert len(answers) >= 4
    assert {a['status'] for a in answers} == {rpc.OK}, answers
    # Without coalescing each call started an interval of its own.
    assert 1 <= ran <= elapsed / agent_mod.EARLY_WAKE_SPACING_S + 1, \
        (ran, elapsed, len(answers))


def test_an_orphan_reservation_never_cuts_a_floor_and_can_be_released(
        tmp_path, two_guests, caplog):
    caplog.set_level(logging.INFO)
    orphan = str(uuid.uuid4())

    def report_with(pred):
        deadline = time.monotonic() + 30
        while True:
            report = r.agent.last_report
            if report is not None and pred(report.guests):
                return report
            assert time.monotonic() < deadline, report and report.guests
            time.sleep(0.02)

    # 1024 MiB fast tier - 900 reserve - floors 12 = 112 MiB of room
    with Running(make_conf(tmp_path, dram_reserve_mb=900)) as r:
        r.wait_interval(2)
        # the instance that never arrives (its spawn failed)
        assert r.client.reserve_dram({}, HOST, orphan, 100, 20)[
            'status'] == rpc.OK
        # another starts without a reservation: floors 76 leave 48 MiB
        with workloads.Workload('--size-mb', 64, '--hot-mb', 4,
                                '--register-dir', tmp_path / 'guests',
                                '--name', 'late', '--floor-mb', 64):
            report = report_with(lambda g: 'late' in g and g['late'].tiered)
            # every floor whole; the reservation holds what they leave
            assert {k: st.budget_mb for k, st in report.guests.items()} == \
                {'static1': 8, 'od1': 4, 'late': 64}
            # admission counts the floors of the guests running now
            refused = r.client.reserve_dram({}, HOST, str(uuid.uuid4()), 10,
                                            5)
            assert refused['status'] == rpc.INSUFFICIENT, refused
            assert 'DRAM floors of 76 MiB' in refused['reason']

            released = r.client.release_dram({}, HOST, orphan)
            assert released['status'] == rpc.RELEASED, released
            assert released['mb'] == 100
            # idempotent
            again = r.client.release_dram({}, HOST, orphan)
            assert again['status'] == rpc.UNKNOWN, again
            assert r.client.host_stats({}, HOST)['reservations'] == []
            # od1 gets its hot demand back (24) from the 48 MiB
            report_with(lambda g: g['od1'].budget_mb == 24)
    assert '100 MiB are 52 MiB short' in caplog.text
    assert 'no floor is cut' in caplog.text
    assert 'scaled by' not in caplog.text


@pytest.mark.parametrize('bad', ['not-a-uuid', None, 'x' * 40])
def test_release_dram_names_a_bad_instance_uuid(tmp_path, bad):
    with Running(make_conf(tmp_path)) as r:
        answer = r.client.release_dram({}, HOST, bad)
    assert answer['status'] == rpc.INVALID
    assert 'instance_uuid' in answer['reason'] and \
        'not a UUID' in answer['reason']


def test_an_unclaimed_reservation_expires(tmp_path, two_guests, caplog):
    caplog.set_level(logging.INFO)
    new = str(uuid.uuid4())
    with Running(make_conf(tmp_path, reservation_ttl=1,
                           dram_reserve_mb=500)) as r:
        r.wait_interval(2)
        assert r.client.reserve_dram({}, HOST, new, 500, 20)['status'] == \
            rpc.OK
        assert r.agent.last_report.guests['od1'].budget_mb == 4 + 12
        deadline = time.monotonic() + 30
        while r.client.host_stats({}, HOST)['reservations']:
            assert time.monotonic() < deadline, 'the reservation stayed'
            time.sleep(0.05)
        back = r.wait_interval(r.agent.number + 1)
        assert back.guests['od1'].budget_mb == 24
        assert r.client.release_dram({}, HOST, new)['status'] == rpc.UNKNOWN
    assert 'reservation %s (500 MiB' % new in caplog.text
    assert 'expired: no guest with that uuid appeared' in caplog.text


def test_stats_calls(tmp_path, two_guests):
    with Running(make_conf(tmp_path)) as r:
        r.wait_interval(2)
        g = r.client.guest_stats({}, HOST, 'od1')
        assert g['policy'] == 'on_demand' and g['floor_mb'] == 4
        assert g['ceiling_mb'] == 24 and g['ram_mb'] == 32
        assert g['dram_mb'] == 24 and g['slow_mb'] == 8
        assert g['pid'] == two_guests[1].pid
        with pytest.raises(rpc.GuestNotManaged, match='not a tiered guest'):
            r.client.guest_stats({}, HOST, str(uuid.uuid4()))
        h = r.client.host_stats({}, HOST)
    assert h['tiers'] == [
        {'rank': 0, 'nodes': [0], 'capacity_mb': 1024,
         'free_mb': NODE_FREE_MB},
        {'rank': 1, 'nodes': [1], 'capacity_mb': 1024,
         'free_mb': NODE_FREE_MB}]
    assert [g['instance_uuid'] for g in h['guests']] == ['od1', 'static1']
    assert h['interval'] >= 2 and h['reservations'] == []


def test_a_call_to_another_host_is_not_answered(tmp_path):
    with Running(make_conf(tmp_path)) as r:
        client = rpc.AgentClient(r.transport, timeout=1)
        with pytest.raises(messaging.MessagingTimeout):
            client.host_stats({}, 'compute-8')


class Collector:
    def __init__(self):
        self.got = []
        self.cond = threading.Condition()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        with self.cond:
            self.got.append((publisher_id, event_type, payload, metadata))
            self.cond.notify_all()

    def wait(self, n, timeout=30):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), \
                self.got
            return list(self.got)


def test_usage_notifications_reach_a_listener(tmp_path, two_guests):
    conf = make_conf(tmp_path, notifications=True)
    ntransport = messaging.get_notification_transport(conf)
    collector = Collector()
    listener = messaging.get_notification_listener(
        ntransport, [messaging.Target(topic='notifications')], [collector])
    listener.start()
    try:
        r = Running(conf)
        with r:
            got = collector.wait(4)
    finally:
        listener.stop()
        listener.wait()
    publisher, event, payload, metadata = got[0]
    assert publisher == 'loki-memtier.%s' % HOST
    assert event == rpc.USAGE_EVENT
    assert metadata['message_id'] and metadata['timestamp']
    by_guest = {}
    for _, _, p, _ in got:
        by_guest.setdefault(p['instance_uuid'], []).append(p)
    od = by_guest['od1'][0]
    assert od['policy'] == 'on_demand' and od['host'] == HOST
    assert (od['floor_mb'], od['ceiling_mb'], od['budget_mb']) == (4, 24, 24)
    assert od['dram_mb'] + od['slow_mb'] == 32
    assert od['period_s'] >= 1.0 and od['intervals'] >= 2
    assert set(od) >= {'dram_mb_avg', 'slow_mb_avg', 'promoted_mb',
                       'demoted_mb', 'period_start', 'period_end'}
    st = by_guest['static1'][0]
    assert st['budget_mb'] == 8 and st['dram_mb'] == 8


def test_guest_heat_keeps_recent_intervals(tmp_path, two_guests):
    def source(g, layout, n):
        out = np.zeros(len(layout), np.uint8)
        out[:4] = 20       # the first 8 MiB are hot
        return out
    with Running(make_conf(tmp_path), source) as r:
        r.wait_interval(3)
        heat = r.client.guest_heat({}, HOST, 'od1')
        with pytest.raises(rpc.GuestNotManaged):
            r.client.guest_heat({}, HOST, 'nobody')
    assert heat['chunks'] == 16 and heat['chunk_kb'] == 2048
    assert len(heat['intervals']) >= 2
    assert heat['intervals'] == sorted(heat['intervals'])
    last = heat['heat'][-1]
    assert len(last) == 16
    assert min(last[:4]) > 0 and max(last[4:]) == 0
    # od1's budget is its whole hot demand; the hot chunks are in DRAM
    assert heat['dram_percent'][-1][:4] == [100] * 4
