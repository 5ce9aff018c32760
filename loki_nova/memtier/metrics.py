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

"""The agent's figures as Prometheus metrics, over HTTP, standard library
only.

``AgentMetrics`` is an ``Agent.listeners`` callable: after every interval
it takes the interval's report (and the agent's reservations) into a
state of its own under a lock, and ``render`` writes that state in the
Prometheus text exposition format (version 0.0.4).  ``MetricsServer``
serves ``GET /metrics`` from a ``ThreadingHTTPServer`` in a daemon
thread; any other path is 404.  A scrape never touches the agent, so a
slow or stuck scraper cannot hold up tiering, and what it sees is always
one whole interval.

Per-guest series carry the label ``instance_uuid`` (the guest's key: the
Nova instance uuid, or the registered name of a process-watcher guest),
not ``instance``, which Prometheus itself sets to the scraped target.
Gauges also carry ``policy``; counters do not, so that a policy change
does not start new counter series.  ``loki_memtier_guest_info`` has both
and the watcher (``source``).  A guest's series go when the guest leaves
the agent (its process exited, it was undefined or migrated away);
managed again later, its counters start again from 0, which Prometheus'
``rate`` and ``increase`` read as a counter reset.
"""

import errno
import http.server
import ipaddress
import logging
import math
import re
import socket
import socketserver
import threading
import urllib.parse

LOG = logging.getLogger(__name__)
MiB = 1024 * 1024
CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
OPTION = '[memtier] metrics_listen'
_LISTEN = re.compile(r'^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+))'
                     r':(?P<port>[0-9]{1,5})$')


class ListenError(Exception):
    """``metrics_listen`` is malformed or cannot be listened on."""


def parse_listen(value):
    """``HOST:PORT`` or ``[IPV6]:PORT`` → (host, port).  The host is
    required (``0.0.0.0`` or ``[::]`` listen everywhere, never by
    accident); port 0 takes a free port."""
    m = _LISTEN.match(value.strip())
    port = int(m.group('port')) if m else -1
    if not m or port > 65535:
        raise ListenError(
            '%s = %r is not HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464'
            % (OPTION, value))
    return m.group('v6') or m.group('host'), port


# -- the exposition format ----------------------------------------------------

def escape_help(text):
    return text.replace('\\', r'\\').replace('\n', r'\n')


def escape_label(value):
    return (str(value).replace('\\', r'\\').replace('"', r'\"')
            .replace('\n', r'\n'))


def format_value(value):
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    return repr(float(value))


class _Family:
    def __init__(self, name, kind, help_text):
        self.name, self.kind, self.help = name, kind, help_text
        self.samples = []

    def add(self, value, labels=(), suffix=''):
        self.samples.append((suffix, labels, value))
        return self

    def lines(self):
        yield '# HELP %s %s' % (self.name, escape_help(self.help))
        yield '# TYPE %s %s' % (self.name, self.kind)
        for suffix, labels, value in self.samples:
            text = ','.join('%s="%s"' % (k, escape_label(v))
                            for k, v in labels)
            yield '%s%s%s %s' % (self.name, suffix,
                                 '{%s}' % text if text else '',
                                 format_value(value))


def _bytes(mb):
    return int(round(mb * MiB))


class _Guest:
    """What the metrics know of one guest."""

    def __init__(self):
        self.source = self.policy = ''
        self.floor = self.ceiling = 0
        #: From the last interval that ran to the end for the guest:
        #: (dram, slow, hot, budget) in bytes; None before the first.
        self.measured = None
        self.tiered = False
        self.errors = 0
        self.promoted = 0
        self.demoted = 0
        self.failed_pages = 0


class AgentMetrics:
    """The state behind /metrics; ``observe`` is the agent listener."""

    def __init__(self, agent):
        self.agent = agent
        self._lock = threading.Lock()
        stats = agent.host_stats()
        self.tiers = [(t['rank'], ','.join(map(str, t['nodes'])),
                       t['capacity_mb'] * MiB) for t in stats['tiers']]
        self.dram_reserve = stats['dram_reserve_mb'] * MiB
        self.interval_s = float(stats['interval_s'])
        self.intervals = 0
        self.duration_sum = 0.0
        self.cpu_sum = 0.0
        self.last_ended = None
        self.reservations = (0, 0)
        self.guests = {}

    def attach(self):
        self.agent.listeners.append(self.observe)
        return self

    def observe(self, report):
        """Take one IntervalReport (called in the agent's loop thread)."""
        held = self.agent.host_stats()['reservations']
        with self._lock:
            self.intervals += 1
            self.duration_sum += report.wall_s
            self.cpu_sum += report.cpu_s
            self.last_ended = report.ended
            self.reservations = (len(held),
                                 sum(r['mb'] for r in held) * MiB)
            for key in set(self.guests) - set(report.guests):
                del self.guests[key]
            for key, st in report.guests.items():
                g = self.guests.setdefault(key, _Guest())
                g.source, g.policy = st.source, st.policy
                g.floor, g.ceiling = st.floor_mb * MiB, st.ceiling_mb * MiB
                g.tiered = bool(st.tiered and not st.error)
                if st.tiered:
                    g.measured = tuple(_bytes(v) for v in (
                        st.dram_mb, st.slow_mb, st.hot_mb, st.budget_mb))
                g.errors += 1 if st.error else 0
                g.promoted += _bytes(st.promoted_mb)
                g.demoted += _bytes(st.demoted_mb)
                g.failed_pages += st.failed_pages

    def families(self):
        """The metric families, from one consistent state."""
        with self._lock:
            return self._families()

    def render(self):
        return ''.join(line + '\n' for f in self.families()
                       for line in f.lines())

    def _families(self):
        f = _Family
        out = [
            f('loki_memtier_intervals_total', 'counter',
              'Tiering intervals the agent completed since it started.')
            .add(self.intervals),
            f('loki_memtier_interval_duration_seconds', 'summary',
              'Wall-clock time of the completed tiering intervals.')
            .add(self.duration_sum, suffix='_sum')
            .add(self.intervals, suffix='_count'),
            f('loki_memtier_interval_cpu_seconds_total', 'counter',
              'CPU time the agent process spent in tiering intervals.')
            .add(self.cpu_sum),
            f('loki_memtier_configured_interval_seconds', 'gauge',
              'Configured length of one tiering interval ([memtier] '
              'interval).').add(self.interval_s),
        ]
        last = f('loki_memtier_last_interval_timestamp_seconds', 'gauge',
                 'When the last completed interval ended, in seconds '
                 'since the Unix epoch; absent before the first.')
        if self.last_ended is not None:
            last.add(self.last_ended)
        out.append(last)
        cap = f('loki_memtier_tier_capacity_bytes', 'gauge',
                'Memory of each tier of this host; tier 0 is DRAM, higher '
                'tiers are slower.')
        for rank, nodes, size in self.tiers:
            cap.add(size, (('tier', rank), ('nodes', nodes)))
        out += [
            cap,
            f('loki_memtier_dram_reserve_bytes', 'gauge',
              'DRAM kept back from guests for the host itself ([memtier] '
              'dram_reserve_mb).').add(self.dram_reserve),
            f('loki_memtier_reservations', 'gauge',
              'DRAM reservations (reserve_dram) waiting for their guest '
              'to appear.').add(self.reservations[0]),
            f('loki_memtier_reserved_bytes', 'gauge',
              'DRAM held by those reservations.')
            .add(self.reservations[1]),
            f('loki_memtier_guests', 'gauge',
              'Guests the agent manages, as of the last interval.')
            .add(len(self.guests)),
        ]
        guests = sorted(self.guests.items())
        info = f('loki_memtier_guest_info', 'gauge',
                 'One per managed guest: its tiering policy and the watcher '
                 'that found it.')
        for key, g in guests:
            info.add(1, (('instance_uuid', key), ('source', g.source),
                         ('policy', g.policy)))
        out.append(info)
        gauges = [
            ('dram', 'Guest memory in DRAM (tier 0) at the end of the '
                     'last interval that completed for the guest.'),
            ('slow', 'Guest memory in slower tiers at the end of the last '
                     'interval that completed for the guest.'),
            ('hot', 'Guest memory the classifier counts as hot, as of the '
                    'last interval that completed for the guest.'),
            ('budget', 'DRAM budget the arbiter gave the guest in the last '
                       'interval that completed for it.'),
        ]
        for i, (what, text) in enumerate(gauges):
            fam = f('loki_memtier_guest_%s_bytes' % what, 'gauge', text)
            for key, g in guests:
                if g.measured is not None:
                    fam.add(g.measured[i], (('instance_uuid', key),
                                            ('policy', g.policy)))
            out.append(fam)
        floor = f('loki_memtier_guest_floor_bytes', 'gauge',
                  'DRAM the guest is guaranteed by its policy.')
        ceiling = f('loki_memtier_guest_ceiling_bytes', 'gauge',
                    'Most DRAM the guest may be given by its policy.')
        tiered = f('loki_memtier_guest_tiered', 'gauge',
                   '1 if the last interval ran to the end for the guest '
                   'without an error, else 0.')
        for key, g in guests:
            labels = (('instance_uuid', key), ('policy', g.policy))
            floor.add(g.floor, labels)
            ceiling.add(g.ceiling, labels)
            tiered.add(int(g.tiered), labels)
        out += [floor, ceiling, tiered]
        counters = [
            ('loki_memtier_promoted_bytes_total', 'promoted',
             'Guest memory moved into DRAM.'),
            ('loki_memtier_demoted_bytes_total', 'demoted',
             'Guest memory moved out of DRAM to a slower tier.'),
            ('loki_memtier_move_failed_pages_total', 'failed_pages',
             'Guest pages move_pages(2) failed to move (other than pages '
             'not present or shared with another process).'),
            ('loki_memtier_guest_errors_total', 'errors',
             'Intervals in which sampling or tiering the guest failed.'),
        ]
        for name, attr, text in counters:
            fam = f(name, 'counter', text)
            for key, g in guests:
                fam.add(getattr(g, attr), (('instance_uuid', key),))
            out.append(fam)
        return out


# -- HTTP ---------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = 'loki-memtier-agent'
    #: A client that stalls mid-request gives up its thread after this.
    timeout = 10

    def do_GET(self):
        if urllib.parse.urlsplit(self.path).path != '/metrics':
            self._reply(404, b'Not found: the metrics are at /metrics\n',
                        'text/plain; charset=utf-8')
            return
        try:
            body = self.server.metrics.render().encode('utf-8')
        except Exception:
            LOG.exception('rendering the metrics failed')
            self._reply(500, b'rendering the metrics failed\n',
                        'text/plain; charset=utf-8')
            return
        self._reply(200, body, CONTENT_TYPE)

    def _reply(self, code, body, content_type):
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        LOG.debug('metrics request from %s: %s', self.address_string(),
                  fmt % args)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, family, address):
        self.address_family = family
        self.metrics = None
        super().__init__(address, _Handler)

    def server_bind(self):
        # HTTPServer.server_bind looks the host name up (getfqdn), which
        # can wait on DNS; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class MetricsServer:
    """Listens on ``listen`` (``HOST:PORT``) as soon as it is made, so that
    an address in use stops the agent before anything else starts; serves
    from ``serve`` on."""

    def __init__(self, listen):
        self.listen = listen
        host, port = parse_listen(listen)
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                      flags=socket.AI_NUMERICSERV)[0]
        except socket.gaierror as exc:
            raise ListenError('%s = %r: cannot resolve %s: %s'
                              % (OPTION, listen, host, exc.strerror)) \
                from None
        family, address = info[0], info[4]
        try:
            self._http = _HTTPServer(family, address)
        except OSError as exc:
            raise ListenError('%s = %r: cannot listen on %s port %d: %s%s'
                              % (OPTION, listen, address[0], port,
                                 exc.strerror or exc, _hint(exc, port))) \
                from None
        self.host, self.port = self._http.server_address[:2]
        self._thread = None
        self.metrics = None

    @property
    def url(self):
        host = '[%s]' % self.host if ':' in self.host else self.host
        return 'http://%s:%d/metrics' % (host, self.port)

    def is_loopback(self):
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def serve(self, agent):
        """Take ``agent``'s reports from now on and start answering."""
        self.metrics = AgentMetrics(agent).attach()
        self._http.metrics = self.metrics
        self._thread = threading.Thread(target=self._http.serve_forever,
                                        name='loki-metrics', daemon=True)
        self._thread.start()
        LOG.info('serving Prometheus metrics at %s', self.url)
        if not self.is_loopback():
            LOG.warning('the metrics at %s are served without '
                        'authentication to anyone who can reach that '
                        'address, and name the instances of this host; '
                        'limit who can (a firewall, a management network) '
                        'or listen on a loopback address', self.url)
        return self.metrics

    def close(self):
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
            self._thread = None
        self._http.server_close()


def _hint(exc, port):
    if exc.errno == errno.EADDRINUSE:
        return (' (another process listens there; choose another port or '
                'stop that process)')
    if exc.errno == errno.EADDRNOTAVAIL:
        return ' (no interface of this host has that address)'
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return (' (ports below 1024 need CAP_NET_BIND_SERVICE, which the '
                'agent does not have; choose a port above 1023)')
    return ''
