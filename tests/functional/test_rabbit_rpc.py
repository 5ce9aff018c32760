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

"""The driver's RPC client and the agent's server over a real RabbitMQ.

A private broker on loopback (tests/rabbit.py).  The agent is the real
loop and its message-bus side in threads of this process, over two
workload processes (see tests/agentbus.py for what stands in for what on
this one-node machine); the client is ``rpc.AgentClient``, the class
``LokiDriver.reserve_dram`` uses, on a transport of its own with Nova's
control exchange.  Tap queues bound next to oslo.messaging's own show
the messages as they went over the wire.  Then the broker restarts: the
agent keeps tiering while it is away, and both RPC and notifications work
again afterwards.
"""

import json
import threading
import time
import uuid

import kombu
import oslo_messaging as messaging
import pytest

from loki_nova.memtier import rpc
from tests import agentbus
from tests import rabbit
from tests import workloads

pytestmark = pytest.mark.rabbitmq
HOST = agentbus.HOST
RECONNECT_DEADLINE = 120


class Listener:
    def __init__(self):
        self.got = []
        self.cond = threading.Condition()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        with self.cond:
            self.got.append((publisher_id, event_type, payload))
            self.cond.notify_all()

    def wait_more(self, than, timeout=60):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) > than,
                                      timeout), self.got
            return list(self.got)


def fast_reconnect(conf):
    # Retry every second or two while the broker is away, not with the
    # default backoff of up to 30 s.
    conf.set_override('rabbit_retry_backoff', 0,
                      group='oslo_messaging_rabbit')
    conf.set_override('rabbit_interval_max', 2,
                      group='oslo_messaging_rabbit')


def tap(conn, exchange, key, name):
    """A queue bound beside oslo.messaging's own, to see the raw
    messages; declared like oslo.messaging declares its exchanges."""
    ex = kombu.Exchange(exchange, type='topic', durable=False,
                        auto_delete=False)
    q = kombu.Queue(name, exchange=ex, routing_key=key, durable=False,
                    auto_delete=True)
    bound = q(conn.channel())
    bound.declare()
    return bound


def drain(queue, timeout=30):
    """The messages in ``queue``, decoded from oslo.messaging's envelope;
    waits (bounded) for at least one."""
    out = []
    deadline = time.monotonic() + timeout
    while not out:
        msg = queue.get(no_ack=True)
        while msg is not None:
            body = json.loads(msg.body)
            out.append(json.loads(body['oslo.message'])
                       if 'oslo.message' in body else body)
            msg = queue.get(no_ack=True)
        if not out:
            assert time.monotonic() < deadline, 'nothing on the tap queue'
            time.sleep(0.1)
    return out


def call_until(fn, deadline):
    errors = []
    while True:
        try:
            return fn()
        except messaging.MessagingException as exc:
            errors.append(repr(exc))
        assert time.monotonic() < deadline, errors[-5:]
        time.sleep(0.5)


def test_reserve_dram_and_usage_over_rabbitmq_survive_a_broker_restart(
        tmp_path):
    rabbit.skip_or_fail_without_rabbit()
    reg = str(tmp_path / 'guests')
    with rabbit.RabbitBroker() as broker, \
            workloads.Workload('--size-mb', 32, '--hot-mb', 4,
                               '--register-dir', reg, '--name', 'static1',
                               '--floor-mb', 8), \
            workloads.Workload('--size-mb', 32, '--hot-mb', 4,
                               '--register-dir', reg, '--name', 'od1',
                               '--policy', 'on_demand', '--floor-mb', 4,
                               '--ceiling-mb', 24):
        # Host reserve 500 MiB, so a reservation of 500 MiB leaves od1 12
        # MiB above its floor (the fixture's 768 MiB free is enough).
        conf = agentbus.make_conf(tmp_path, url=broker.url,
                                  notifications=True, usage_interval=2.0,
                                  dram_reserve_mb=500)
        # The agent's own default exchange, as loki-memtier-agent sets it.
        conf.set_override('control_exchange', 'loki')
        fast_reconnect(conf)
        # nova-compute's side: its own transport and control exchange.
        nova_conf = rabbit.messaging_conf()
        nova_conf.set_override('control_exchange', 'nova')
        fast_reconnect(nova_conf)
        nova_transport = messaging.get_rpc_transport(nova_conf,
                                                     url=broker.url)
        client = rpc.AgentClient(nova_transport, timeout=30)

        listener = Listener()
        ntransport = messaging.get_notification_transport(conf)
        consumer = messaging.get_notification_listener(
            ntransport, [messaging.Target(topic='notifications')],
            [listener])
        consumer.start()
        conn = kombu.Connection(broker.amqp_url)
        running = agentbus.Running(conf)
        reports = []
        running.agent.listeners.append(reports.append)
        try:
            with running:
                rpc_tap = tap(conn, rpc.EXCHANGE, 'loki-memtier.#',
                              'tap-rpc')
                usage_tap = tap(conn, 'loki', 'notifications.*',
                                'tap-usage')
                running.wait_interval(2)
                new = str(uuid.uuid4())
                answer = client.reserve_dram({'request_id': 'req-wire'},
                                             HOST, new, 500, 20)
                assert answer['status'] == rpc.OK, answer
                request = drain(rpc_tap)[0]
                print('request on the wire:', json.dumps(request, indent=1))
                print('answer:', json.dumps(answer, indent=1))
                assert request['method'] == 'reserve_dram'
                assert request['args'] == {'instance_uuid': new,
                                           'mb': 500, 'timeout': 20}
                assert request['version'] == '1.0'
                assert request['_context_request_id'] == 'req-wire'
                assert request['_reply_q'].startswith('reply_')
                assert client.guest_stats({}, HOST, 'od1')['budget_mb'] \
                    == 4 + 12
                assert client.host_stats({}, HOST)['reservations'][0][
                    'instance_uuid'] == new

                got = listener.wait_more(1)
                usage = drain(usage_tap)[0]
                print('usage notification on the wire:',
                      json.dumps(usage, indent=1))
                assert usage['event_type'] == rpc.USAGE_EVENT
                assert usage['publisher_id'] == 'loki-memtier.' + HOST
                assert usage['priority'] == 'INFO'
                assert usage['message_id'] and usage['timestamp']
                assert usage['payload']['instance_uuid'] in ('od1',
                                                             'static1')
                assert {p['instance_uuid'] for _, _, p in got} <= \
                    {'od1', 'static1'}

                # The broker goes away and comes back.
                before = running.agent.number
                seen = len(reports)
                broker.restart()
                during = reports[seen:]
                print('intervals while the broker restarted: %d'
                      % len(during))
                assert running.agent.number > before
                assert during and all(
                    set(r.guests) == {'od1', 'static1'} and
                    not any(s.error for s in r.guests.values())
                    for r in during)

                deadline = time.monotonic() + RECONNECT_DEADLINE
                again = call_until(lambda: client.reserve_dram(
                    {}, HOST, str(uuid.uuid4()), 8, 20), deadline)
                assert again['status'] == rpc.OK, again
                count = len(listener.got)
                assert listener.wait_more(count, RECONNECT_DEADLINE)
        finally:
            consumer.stop()
            consumer.wait()
            conn.release()
            nova_transport.cleanup()
            ntransport.cleanup()
            running.transport.cleanup()
