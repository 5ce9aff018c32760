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
* 1.2 -- ``release_dram(instance_uuid)`` (a spawn that failed or was
  rescheduled gives its reservation back).

Answers are plain dicts (JSON-safe), so any client can read them.
``reserve_dram`` answers ``{"status": ..., "reason": ...}`` plus figures;
status is ``ok`` (the room is there), ``timeout`` (no room confirmed in
time, or the agent is stuck: the reason says why; the reservation stays
until the guest appears, it is released or it expires, unless the reason
says it already expired or was replaced), ``insufficient`` (the floors of
the running guests leave no room; nothing was reserved), ``released``
(``release_dram`` dropped it while the caller waited) or ``invalid`` (a
bad argument, named in the reason).  ``release_dram`` answers
``released`` (the reservation and its MiB are gone), ``unknown`` (none
was held: never made, taken up by its guest, released or expired) or
``invalid``; releasing twice is harmless.

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
VERSION = '1.2'
#: Seconds a client waits beyond the ``timeout`` it gives reserve_dram,
#: for the answer to travel back.
REPLY_MARGIN_S = 5
#: Event type of the per-instance usage notifications.
USAGE_EVENT = 'loki.memtier.instance.usage'

OK = 'ok'
TIMEOUT = 'timeout'
INSUFFICIENT = 'insufficient'
INVALID = 'invalid'
RELEASED = 'released'
UNKNOWN = 'unknown'


#: Longest instance key the agent can manage: an instance uuid has 36
#: characters and a process-watcher registration name at most 128.
MAX_KEY_CHARS = 128
#: Most characters of a caller's value that an answer or a log line shows.
SHOWN_CHARS = 80
#: Numbers beyond this are no MiB count or timeout; they are shown, not
#: passed on (a 5000-digit integer cannot even be printed: Python refuses).
_MAX_NUMBER = 2 ** 63


class GuestNotManaged(Exception):
    """The agent does not manage (or no longer manages) this instance."""


def shown(value, limit=SHOWN_CHARS):
    """``value`` as one line of printable text of about ``limit``
    characters at most, for answers and log lines: a caller's value may
    be megabytes long, and may hold newlines or terminal escapes that
    would forge or garble log lines.  Characters that are not printable
    are written as Python escapes (``\\n``, ``\\x1b``, ``\\u2028``); a
    longer text is cut and says how long it was."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = repr(value)
        except ValueError:     # an int too long to print
            text = '<an integer of %d bits>' % value.bit_length()
    out = ''.join(c if c.isprintable() else
                  c.encode('unicode_escape').decode('ascii')
                  for c in text[:limit])
    if len(out) > limit or len(text) > limit:
        out = '%s... (%d characters)' % (out[:limit], len(text))
    return out


def _key(instance_uuid):
    """``instance_uuid`` as a caller sent it when it could name a guest (a
    string of at most ``MAX_KEY_CHARS`` printable characters), else its
    ``shown`` form, which names none and is safe to answer and log."""
    if isinstance(instance_uuid, str) and \
            len(instance_uuid) <= MAX_KEY_CHARS and \
            instance_uuid.isprintable():
        return instance_uuid
    return shown(instance_uuid)


def _number(value):
    """``value`` when it is a number the agent can weigh, else its
    ``shown`` form, which the agent refuses as not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and -_MAX_NUMBER < value < _MAX_NUMBER:
        return value
    return shown(value)


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
    ``reserve_dram``, ``release_dram``, ``guest_stats``, ``guest_heat``,
    ``host_stats``)."""

    target = messaging.Target(version=VERSION)

    def __init__(self, agent):
        self.agent = agent

    # What callers send is bounded and made printable here, before the
    # agent sees it: every answer and log line after this point carries
    # at most a short, single-line form of it.

    def reserve_dram(self, ctxt, instance_uuid, mb, timeout):
        instance_uuid = _key(instance_uuid)
        mb, timeout = _number(mb), _number(timeout)
        LOG.info('reserve_dram(%s, %s MiB, timeout %s s) requested%s',
                 instance_uuid, mb, timeout, _request_id(ctxt))
        answer = self.agent.reserve_dram(instance_uuid, mb, timeout)
        LOG.info('reserve_dram(%s, %s MiB): %s%s', instance_uuid, mb,
                 answer['status'],
                 '' if answer['status'] == OK else ': ' + answer['reason'])
        return answer

    def release_dram(self, ctxt, instance_uuid):
        answer = self.agent.release_dram(_key(instance_uuid))
        LOG.info('release_dram(%s): %s: %s%s', answer['instance_uuid'],
                 answer['status'], answer['reason'], _request_id(ctxt))
        return answer

    @messaging.expected_exceptions(GuestNotManaged)
    def guest_stats(self, ctxt, instance_uuid):
        return self.agent.guest_stats(_key(instance_uuid))

    @messaging.expected_exceptions(GuestNotManaged)
    def guest_heat(self, ctxt, instance_uuid):
        return self.agent.guest_heat(_key(instance_uuid))

    def host_stats(self, ctxt):
        return self.agent.host_stats()


def _request_id(ctxt):
    rid = ctxt.get('request_id') if isinstance(ctxt, dict) else None
    return ' by request %s' % shown(rid) if rid else ''


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

    def release_dram(self, ctxt, host, instance_uuid):
        """Drop the DRAM reserved for ``instance_uuid`` on ``host`` (the
        spawn failed or went elsewhere); see the module for the answer."""
        cctxt = self.client.prepare(server=host, version='1.2',
                                    timeout=self.timeout)
        return cctxt.call(ctxt, 'release_dram', instance_uuid=instance_uuid)

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
