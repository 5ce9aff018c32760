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

"""The private RabbitMQ broker of tests/rabbit.py, end to end.

An oslo.messaging RPC server (threading executor) and client talk over
``rabbit://`` to a real broker; the broker restarts under them (same port
and data, so a durable queue keeps its persistent message) and a second
call gets through once the driver has reconnected; after ``stop()`` none
of the broker's processes or its epmd is left.  Without RabbitMQ the
broker test skips (fails under ``LOKI_REQUIRE_RABBIT=1``); the last test
checks that choice without a broker.
"""

import time
import warnings

import pytest

from tests import rabbit

TOPIC = 'loki-rabbit-fixture'
SERVER = 'loki-rabbit-server'
# Seconds a call after the restart may take to get through (reconnects
# of the client and the server included).
RECONNECT_DEADLINE = 90


class EchoEndpoint(object):
    """The RPC server's endpoint: answers what it was sent."""

    def __init__(self, target):
        self.target = target

    def echo(self, ctxt, value):
        return {'value': value}


def _publish_durable(broker, body):
    """Publish ``body`` persistently to the durable queue loki-durable."""
    import kombu

    with kombu.Connection(broker.amqp_url, connect_timeout=5) as conn:
        queue = kombu.Queue('loki-durable', durable=True,
                            auto_delete=False)
        with conn.Producer() as producer:
            producer.publish(body, routing_key='loki-durable',
                             declare=[queue], delivery_mode=2,
                             serializer='json')


def _durable_get(broker):
    """Take one message from loki-durable; its body, or None."""
    import kombu

    with kombu.Connection(broker.amqp_url, connect_timeout=5) as conn:
        queue = kombu.Queue('loki-durable', durable=True,
                            auto_delete=False)
        message = queue(conn.channel()).get(no_ack=True)
        return message.decode() if message is not None else None


def _call_until_ok(client, value, deadline):
    """Call ``echo`` until it answers or ``deadline`` passes."""
    import oslo_messaging

    errors = []
    while True:
        try:
            return client.prepare(timeout=5).call({}, 'echo', value=value)
        except oslo_messaging.MessagingException as exc:
            # MessagingTimeout, MessageDeliveryFailure, ... while the
            # driver reconnects.
            errors.append(repr(exc))
        if time.monotonic() > deadline:
            pytest.fail('no RPC answer within the deadline; errors: %s'
                        % errors[-5:])
        time.sleep(0.5)


@pytest.mark.rabbitmq
def test_rpc_roundtrip_survives_broker_restart():
    rabbit.skip_or_fail_without_rabbit()
    import oslo_messaging

    broker = rabbit.RabbitBroker()
    transport = server = None
    try:
        broker.start()
        url, port = broker.url, broker.port
        assert url == 'rabbit://guest:guest@127.0.0.1:%d/' % port

        conf = rabbit.messaging_conf()
        # Reconnect every second or two while the broker is away, not with
        # the default backoff of up to 30 s.
        conf.set_override('rabbit_retry_backoff', 0,
                          group='oslo_messaging_rabbit')
        conf.set_override('rabbit_interval_max', 2,
                          group='oslo_messaging_rabbit')
        transport = oslo_messaging.get_rpc_transport(conf, url=url)
        target = oslo_messaging.Target(topic=TOPIC, server=SERVER,
                                       version='1.0')
        with warnings.catch_warnings():
            # Naming the executor is deprecated (threading is becoming the
            # only one) but keeps the test off eventlet whatever else the
            # process has imported.
            warnings.simplefilter('ignore', DeprecationWarning)
            server = oslo_messaging.get_rpc_server(
                transport, target, [EchoEndpoint(target)],
                executor='threading')
        assert server.executor_type == 'threading'
        server.start()
        client = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic=TOPIC, server=SERVER,
                                             version='1.0'))
        deadline = time.monotonic() + 30
        assert _call_until_ok(client, 1, deadline) == {'value': 1}

        _publish_durable(broker, {'kept': 'across restart'})
        old_pid = broker.pid
        broker.restart()
        assert broker.url == url
        assert broker.pid != old_pid
        assert not rabbit.process_alive(old_pid)
        assert _durable_get(broker) == {'kept': 'across restart'}

        deadline = time.monotonic() + RECONNECT_DEADLINE
        assert _call_until_ok(client, 2, deadline) == {'value': 2}
    finally:
        if server is not None:
            server.stop()
            server.wait()
        if transport is not None:
            transport.cleanup()
        pids = (broker.pid, broker.epmd_pid)
        broker.stop()

    assert all(pid is not None for pid in pids)
    assert not broker.leftover_pids()
    for pid in pids:
        assert not rabbit.process_alive(pid)


@pytest.mark.parametrize('required', ['', '1'])
def test_missing_rabbit_skips_or_fails(monkeypatch, required):
    monkeypatch.setattr(rabbit, 'RABBITMQ_SERVER', '/nonexistent/rabbit')
    monkeypatch.setenv(rabbit.REQUIRE_ENV, required)
    expected = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(expected, match='RabbitMQ is not installed'):
        rabbit.skip_or_fail_without_rabbit()
