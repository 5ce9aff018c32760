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

"""The agent's RPC API over oslo.messaging, both ends.

Exchange ``loki``, topic ``loki-memtier``, server = the host's name (the
agent's ``[memtier] host``, which must equal nova-compute's ``[DEFAULT]
host``).  Version
history:

* 1.0 -- ``reserve_dram(instance_uuid, mb, timeout)``,
  ``guest_stats(instance_uuid)``, ``host_stats()``.
* 1.1 -- ``guest_heat(instance_uuid)`` (heat maps).

Answers are plain dicts (JSON-safe), so any client can read them.
``reserve_dram`` answers ``{"status": ..., "reason": ...}`` plus figures;
status is ``ok`` (the room is there), ``timeout`` (not yet, the
reservation stays until the guest appears or expires), ``insufficient``
(the guaranteed floors leave no room; nothing was reserved) or
``invalid`` (a bad argument, named in the reason).

The client never reconstructs server exceptions from class names;
``guest_stats`` of an instance the agent does not manage raises
``GuestNotManaged`` on the client side from the remote error's type name.
"""

import importlib
import logging

from oslo_config import cfg
import oslo_messaging as messaging

LOG = logging.getLogger(__name__)

TOPIC = 'loki-memtier'
#: Both ends name the exchange, so the agent (control_exchange "loki")
#: and nova-compute (control_exchange "nova") meet whatever their
#: defaults are.
EXCHANGE = 'loki'
VERSION = '1.1'
#: Seconds a client waits beyond the ``timeout`` it gives reserve_dram,
#: for the answer to travel back.
REPLY_MARGIN_S = 5
#: Event type of the per-instance usage notifications.
USAGE_EVENT = 'loki.memtier.instance.usage'

OK = 'ok'
TIMEOUT = 'timeout'
INSUFFICIENT = 'insufficient'
INVALID = 'invalid'


class GuestNotManaged(Exception):
    """The agent does not manage (or no longer manages) this instance."""


#: Option groups oslo.messaging 18 reads from the conf it is given but
#: registers only on the global ``cfg.CONF``: (module, list, group).
_GLOBAL_ONLY_GROUPS = (
    ('oslo_messaging._tracing.client', 'oslo_messaging_tracing',
     'oslo_messaging_tracing'),
    ('oslo_messaging._metrics.client', 'oslo_messaging_metrics',
     'oslo_messaging_metrics'),
)


def prepare_conf(conf):
    """Give a private ``ConfigOpts`` the option groups oslo.messaging
    registers only on ``cfg.CONF`` (tracing and metrics, both off by
    default), so that RPC calls and servers work with it."""
    if conf is cfg.CONF:
        return conf
    for module_name, attr, group in _GLOBAL_ONLY_GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:   # an oslo.messaging without that feature
            continue
        for opt in getattr(module, attr, ()):
            try:
                conf.register_opt(opt, group=group)
            except cfg.DuplicateOptError:
                pass
    return conf


class AgentEndpoint:
    """Server side: forwards calls to an ``Agent`` (anything with
    ``reserve_dram``, ``guest_stats``, ``host_stats``)."""

    target = messaging.Target(version=VERSION)

    def __init__(self, agent):
        self.agent = agent

    def reserve_dram(self, ctxt, instance_uuid, mb, timeout):
        LOG.info('reserve_dram(%s, %s MiB, timeout %s s) requested%s',
                 instance_uuid, mb, timeout, _request_id(ctxt))
        answer = self.agent.reserve_dram(instance_uuid, mb, timeout)
        LOG.info('reserve_dram(%s, %s MiB): %s%s', instance_uuid, mb,
                 answer['status'],
                 '' if answer['status'] == OK else ': ' + answer['reason'])
        return answer

    @messaging.expected_exceptions(GuestNotManaged)
    def guest_stats(self, ctxt, instance_uuid):
        return self.agent.guest_stats(instance_uuid)

    @messaging.expected_exceptions(GuestNotManaged)
    def guest_heat(self, ctxt, instance_uuid):
        return self.agent.guest_heat(instance_uuid)

    def host_stats(self, ctxt):
        return self.agent.host_stats()


def _request_id(ctxt):
    rid = (ctxt or {}).get('request_id')
    return ' by request %s' % rid if rid else ''


def get_server(transport, host, agent):
    """The agent's RPC server (not started).  oslo.messaging picks the
    threading executor, since the agent never monkey-patches."""
    target = messaging.Target(exchange=EXCHANGE, topic=TOPIC, server=host)
    return messaging.get_rpc_server(
        transport, target, [AgentEndpoint(agent)],
        access_policy=messaging.DefaultRPCAccessPolicy)


class AgentClient:
    """Client side, as nova-compute's LokiDriver and ``loki-memtier``
    use it.  ``ctxt`` is a dict; a ``request_id`` in it shows up in the
    agent's log."""

    def __init__(self, transport, timeout=30, retry=None):
        """``retry``: connection attempts when the broker is unreachable
        (None: until it answers, as services do; a CLI wants a few)."""
        self.timeout = timeout
        target = messaging.Target(exchange=EXCHANGE, topic=TOPIC)
        self.client = messaging.get_rpc_client(transport, target,
                                               retry=retry)

    def reserve_dram(self, ctxt, host, instance_uuid, mb, timeout):
        cctxt = self.client.prepare(server=host, version='1.0',
                                    timeout=timeout + REPLY_MARGIN_S)
        return cctxt.call(ctxt, 'reserve_dram', instance_uuid=instance_uuid,
                          mb=mb, timeout=timeout)

    def _guest_call(self, ctxt, host, method, instance_uuid, version):
        cctxt = self.client.prepare(server=host, timeout=self.timeout,
                                    version=version)
        try:
            return cctxt.call(ctxt, method, instance_uuid=instance_uuid)
        except messaging.RemoteError as exc:
            if exc.exc_type == GuestNotManaged.__name__:
                raise GuestNotManaged(exc.value) from None
            raise

    def guest_stats(self, ctxt, host, instance_uuid):
        return self._guest_call(ctxt, host, 'guest_stats', instance_uuid,
                                '1.0')

    def guest_heat(self, ctxt, host, instance_uuid):
        return self._guest_call(ctxt, host, 'guest_heat', instance_uuid,
                                '1.1')

    def host_stats(self, ctxt, host):
        cctxt = self.client.prepare(server=host, timeout=self.timeout,
                                    version='1.0')
        return cctxt.call(ctxt, 'host_stats')
