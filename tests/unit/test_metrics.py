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

"""Prometheus metrics of the agent, fetched over real HTTP from the real
loop: real workload processes found by the process watcher, the mover in
query mode, the replay tracker and the ``two_tier`` fixture topology, as
in test_agent.py.  Values are checked against the agent's own interval
reports, exactly."""

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from loki_nova.memtier import agent as agent_mod
from loki_nova.memtier import kernfs
from loki_nova.memtier import metrics
from loki_nova.memtier import mover
from loki_nova.memtier import topology
from loki_nova.memtier.trackers import replay
from tests.unit.test_agent import make_conf as agent_conf

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'fixtures',
                        'kernfs')
MiB = 1024 * 1024
#: Size of each of the two_guests workloads (tests/unit/conftest.py).
GUEST_MB = 32


# -- the agent ------------------------------------------------------------

def make_conf(tmp_path, **overrides):
    """test_agent's configuration with a host reserve and a short
    interval."""
    settings = dict(dram_reserve_mb=100, interval=0.5)
    settings.update(overrides)
    return agent_conf(tmp_path, **settings)


def hot_first(g, layout, n):
    out = np.zeros(len(layout), np.uint8)
    out[:8] = 20
    return out


def make_agent(conf, source=hot_first):
    topo = topology.discover(kernfs.KernelFS(os.path.join(FIXTURES,
                                                          'two_tier')))
    return agent_mod.Agent(
        conf, topology=topo, tracker=replay.ReplayTracker(source),
        mover=mover.Mover(mover.RateLimiter(1 << 30), query_only=True))


@pytest.fixture
def served(tmp_path):
    """An agent and its metrics served on an ephemeral loopback port."""
    agent = make_agent(make_conf(tmp_path))
    server = metrics.MetricsServer('127.0.0.1:0')
    server.serve(agent)
    yield agent, server
    server.close()


# -- HTTP and the exposition format -----------------------------------------

def fetch(url, method='GET'):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read().decode()


NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
SAMPLE = re.compile(r'^(%s)(?:\{(.*)\})? (\S+)$' % NAME)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
UNESCAPE = {'\\\\': '\\', '\\"': '"', '\\n': '\n'}


def parse_labels(text):
    labels, pos = {}, 0
    while text and pos < len(text):
        m = LABEL.match(text, pos)
        assert m, 'bad labels %r at %d' % (text, pos)
        assert m.group(1) not in labels
        labels[m.group(1)] = re.sub(r'\\[\\"n]',
                                    lambda x: UNESCAPE[x.group()],
                                    m.group(2))
        pos = m.end()
        if pos < len(text):
            assert text[pos] == ',', text
            pos += 1
    return labels


def parse(text):
    """Strict reading of the text format: every sample follows the HELP
    and TYPE of its own family, each given once; label values escaped;
    values numbers.  Returns ({family: (type, help)}, [(name, labels,
    value)])."""
    assert text.endswith('\n')
    families, samples = {}, []
    current = None
    for line in text[:-1].split('\n'):
        if line.startswith('# HELP '):
            name, doc = line[len('# HELP '):].split(' ', 1)
            assert re.fullmatch(NAME, name) and name not in families, line
            assert doc and '\n' not in doc
            families[name] = [None, doc]
            current = name
        elif line.startswith('# TYPE '):
            name, kind = line[len('# TYPE '):].split(' ')
            assert name == current and families[name][0] is None, line
            assert kind in ('counter', 'gauge', 'summary'), line
            families[name][0] = kind
        else:
            m = SAMPLE.match(line)
            assert m, 'not a sample: %r' % line
            name, labels, value = m.groups()
            assert current is not None and families[current][0], line
            kind = families[current][0]
            allowed = {current}
            if kind == 'summary':
                allowed = {current + '_sum', current + '_count'}
            assert name in allowed, (line, current)
            samples.append((name, parse_labels(labels or ''),
                            float(value)))
    return {k: tuple(v) for k, v in families.items()}, samples


class Scrape:
    def __init__(self, server):
        status, headers, self.text = fetch(server.url)
        assert status == 200
        assert headers['Content-Type'] == metrics.CONTENT_TYPE
        self.families, self.samples = parse(self.text)

    def value(self, name, **labels):
        found = [v for n, lab, v in self.samples
                 if n == name and all(lab.get(k) == str(x)
                                      for k, x in labels.items())]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    def series(self, name):
        return [lab for n, lab, v in self.samples if n == name]


def b(mb):
    return round(mb * MiB)


# -- tests ------------------------------------------------------------------

def test_metrics_are_the_agent_reports_exactly(tmp_path, two_guests):
    agent = make_agent(make_conf(tmp_path))
    server = metrics.MetricsServer('127.0.0.1:0')
    assert server.port > 0 and server.url == \
        'http://127.0.0.1:%d/metrics' % server.port
    reports = []
    try:
        server.serve(agent)
        agent.listeners.append(reports.append)
        before = Scrape(server)
        assert before.value('loki_memtier_intervals_total') == 0
        assert before.series('loki_memtier_guest_dram_bytes') == []
        assert before.series('loki_memtier_last_interval_timestamp_seconds') \
            == []
        agent.run(max_intervals=3)
        s = Scrape(server)
    finally:
        server.close()
    assert [r.number for r in reports] == [1, 2, 3]
    last = reports[-1]
    assert s.value('loki_memtier_intervals_total') == 3
    assert s.value('loki_memtier_interval_duration_seconds_count') == 3
    assert s.value('loki_memtier_interval_duration_seconds_sum') == \
        sum(r.wall_s for r in reports)
    assert s.value('loki_memtier_interval_cpu_seconds_total') == \
        sum(r.cpu_s for r in reports)
    assert s.value('loki_memtier_last_interval_timestamp_seconds') == \
        last.ended
    assert s.value('loki_memtier_configured_interval_seconds') == 0.5
    assert s.value('loki_memtier_dram_reserve_bytes') == 100 * MiB
    assert s.value('loki_memtier_reservations') == 0
    assert s.value('loki_memtier_reserved_bytes') == 0
    assert s.value('loki_memtier_guests') == 2
    for t in agent.host_stats()['tiers']:
        assert s.value('loki_memtier_tier_capacity_bytes', tier=t['rank'],
                       nodes=','.join(map(str, t['nodes']))) == \
            t['capacity_mb'] * MiB
    assert len(s.series('loki_memtier_tier_capacity_bytes')) == 2
    for key, st in last.guests.items():
        assert st.tiered and st.error is None
        g = dict(instance_uuid=key, policy=st.policy)
        assert s.value('loki_memtier_guest_info', source='process', **g) == 1
        assert s.value('loki_memtier_guest_dram_bytes', **g) == b(st.dram_mb)
        assert s.value('loki_memtier_guest_slow_bytes', **g) == b(st.slow_mb)
        assert s.value('loki_memtier_guest_dram_bytes', **g) + \
            s.value('loki_memtier_guest_slow_bytes', **g) == GUEST_MB * MiB
        assert s.value('loki_memtier_guest_hot_bytes', **g) == b(st.hot_mb)
        assert s.value('loki_memtier_guest_budget_bytes', **g) == \
            b(st.budget_mb)
        assert s.value('loki_memtier_guest_floor_bytes', **g) == \
            st.floor_mb * MiB
        assert s.value('loki_memtier_guest_ceiling_bytes', **g) == \
            st.ceiling_mb * MiB
        assert s.value('loki_memtier_guest_tiered', **g) == 1
        for name, attr in (('promoted_bytes', 'promoted_mb'),
                           ('demoted_bytes', 'demoted_mb')):
            total = b(sum(getattr(r.guests[key], attr) for r in reports))
            assert s.value('loki_memtier_%s_total' % name,
                           instance_uuid=key) == total
        assert s.value('loki_memtier_move_failed_pages_total',
                       instance_uuid=key) == \
            sum(r.guests[key].failed_pages for r in reports)
        assert s.value('loki_memtier_guest_errors_total',
                       instance_uuid=key) == 0
    # (the query-mode mover places nothing on this one-node machine, so
    # the byte counters are 0 here; they count real moves in
    # tests/sandbox/test_metrics_e2e.py and sums in the next test)
    assert s.value('loki_memtier_guest_dram_bytes', instance_uuid='static1',
                   policy='static') == 8 * MiB
    assert s.value('loki_memtier_guest_hot_bytes', instance_uuid='od1',
                   policy='on_demand') == 16 * MiB


def test_counters_add_up_every_report(served):
    agent, server = served
    m = server.metrics
    for n, (prom, dem, failed, err) in enumerate(
            [(2.5, 0.0, 3, None), (0.0, 4.0, 0, 'boom'), (1.0, 0.5, 1, None)]):
        st = agent_mod.GuestStats('g', 'libvirt', 'on_demand', 4, 12,
                                  promoted_mb=prom, demoted_mb=dem,
                                  failed_pages=failed, error=err,
                                  tiered=err is None)
        m.observe(agent_mod.IntervalReport(n + 1, 0.5, 0.25, {'g': st},
                                           1700000000.0 + n))
    s = Scrape(server)
    assert s.value('loki_memtier_promoted_bytes_total',
                   instance_uuid='g') == round(3.5 * MiB)
    assert s.value('loki_memtier_demoted_bytes_total',
                   instance_uuid='g') == round(4.5 * MiB)
    assert s.value('loki_memtier_move_failed_pages_total',
                   instance_uuid='g') == 4
    assert s.value('loki_memtier_guest_errors_total', instance_uuid='g') == 1
    assert s.value('loki_memtier_intervals_total') == 3
    assert s.value('loki_memtier_interval_duration_seconds_sum') == 1.5
    assert s.value('loki_memtier_interval_cpu_seconds_total') == 0.75
    assert s.value('loki_memtier_guest_info', instance_uuid='g',
                   source='libvirt', policy='on_demand') == 1


def test_every_family_follows_the_naming_conventions(served):
    agent, server = served
    agent.run_interval()
    s = Scrape(server)
    assert s.families
    unitless = {'loki_memtier_reservations', 'loki_memtier_guests',
                'loki_memtier_guest_info', 'loki_memtier_guest_tiered'}
    for name, (kind, doc) in s.families.items():
        assert name.startswith('loki_memtier_')
        assert doc.endswith('.') and len(doc.split()) >= 4, name
        if kind == 'counter':
            assert name.endswith('_total'), name
        else:
            assert not name.endswith('_total'), name
            assert name in unitless or name.endswith(
                ('_bytes', '_seconds')), name
    # every sample's family was declared (parse checks the order)
    assert {n for n, _, _ in s.samples} <= set(s.families) | {
        'loki_memtier_interval_duration_seconds_sum',
        'loki_memtier_interval_duration_seconds_count'}


def test_a_guest_that_leaves_takes_its_series_with_it(tmp_path, two_guests):
    a, _ = two_guests
    agent = make_agent(make_conf(tmp_path))
    server = metrics.MetricsServer('127.0.0.1:0')
    try:
        server.serve(agent)
        agent.run_interval()
        first = Scrape(server)
        a.kill()
        report = agent.run_interval()
        second = Scrape(server)
    finally:
        server.close()
    assert set(report.guests) == {'od1'}
    assert {lab['instance_uuid'] for lab in
            first.series('loki_memtier_promoted_bytes_total')} == \
        {'static1', 'od1'}
    for name in second.families:
        for labels in second.series(name):
            assert labels.get('instance_uuid') != 'static1', name
    assert second.value('loki_memtier_guests') == 1
    assert second.series('loki_memtier_demoted_bytes_total') == \
        [{'instance_uuid': 'od1'}]


def test_a_failed_interval_keeps_the_last_measured_figures(tmp_path,
                                                           two_guests):
    broken = threading.Event()

    def source(g, layout, n):
        if g.key == 'od1' and broken.is_set():
            raise RuntimeError('tracker broke for od1')
        return hot_first(g, layout, n)
    agent = make_agent(make_conf(tmp_path), source)
    server = metrics.MetricsServer('127.0.0.1:0')
    try:
        server.serve(agent)
        good = agent.run_interval()
        broken.set()
        bad = agent.run_interval()
        s = Scrape(server)
    finally:
        server.close()
    assert bad.guests['od1'].error == 'tracker broke for od1'
    od = dict(instance_uuid='od1', policy='on_demand')
    assert s.value('loki_memtier_guest_tiered', **od) == 0
    assert s.value('loki_memtier_guest_errors_total',
                   instance_uuid='od1') == 1
    assert s.value('loki_memtier_guest_dram_bytes', **od) == \
        b(good.guests['od1'].dram_mb)
    assert s.value('loki_memtier_guest_tiered', instance_uuid='static1',
                   policy='static') == 1


def test_scrapes_while_the_loop_runs_each_see_one_whole_interval(
        tmp_path, two_guests):
    agent = make_agent(make_conf(tmp_path))
    server = metrics.MetricsServer('127.0.0.1:0')
    fourth = threading.Event()
    agent.listeners.append(lambda r: r.number >= 4 and fourth.set())
    server.serve(agent)
    loop = threading.Thread(target=agent.run, daemon=True)
    loop.start()
    scrapes = 0
    deadline = time.monotonic() + 60
    try:
        while not fourth.is_set():
            assert time.monotonic() < deadline, 'agent loop stalled'
            s = Scrape(server)
            scrapes += 1
            n = s.value('loki_memtier_intervals_total')
            assert s.value('loki_memtier_interval_duration_seconds_count') \
                == n
            for labels in s.series('loki_memtier_guest_dram_bytes'):
                assert s.value('loki_memtier_guest_dram_bytes', **labels) + \
                    s.value('loki_memtier_guest_slow_bytes', **labels) == \
                    GUEST_MB * MiB
            assert s.value('loki_memtier_guests') == \
                len(s.series('loki_memtier_guest_info'))
    finally:
        agent.shutdown()
        loop.join(30)
        server.close()
    assert not loop.is_alive()
    assert scrapes > 0


def test_label_values_and_help_are_escaped(served):
    agent, server = served
    key = 'odd "name" with \\ and\nnewline'
    st = agent_mod.GuestStats(key, 'process', 'static', 8, 8,
                              budget_mb=8.0, dram_mb=8.0, slow_mb=24.0,
                              hot_mb=2.0, promoted_mb=0.5, tiered=True)
    metrics_state = server.metrics
    metrics_state.observe(agent_mod.IntervalReport(
        1, 0.25, 0.125, {key: st}, 1700000000.5))
    s = Scrape(server)
    assert s.value('loki_memtier_guest_dram_bytes', instance_uuid=key,
                   policy='static') == 8 * MiB
    assert s.value('loki_memtier_promoted_bytes_total',
                   instance_uuid=key) == MiB // 2
    assert s.value('loki_memtier_last_interval_timestamp_seconds') == \
        1700000000.5
    assert 'instance_uuid="odd \\"name\\" with \\\\ and\\nnewline"' in \
        s.text
    assert metrics.escape_help('a\\b\nc') == 'a\\\\b\\nc'
    assert metrics.format_value(float('nan')) == 'NaN'
    assert metrics.format_value(float('inf')) == '+Inf'
    assert metrics.format_value(True) == '1'


@pytest.mark.parametrize('path', ['/', '/metric', '/metrics/x',
                                  '/favicon.ico'])
def test_other_paths_are_not_found(served, path):
    _, server = served
    status, _, body = fetch('http://127.0.0.1:%d%s' % (server.port, path))
    assert status == 404 and '/metrics' in body


def test_a_query_string_is_ignored_and_other_methods_refused(served):
    _, server = served
    status, _, body = fetch(server.url + '?name[]=x')
    assert status == 200 and '# TYPE loki_memtier_intervals_total' in body
    status, _, _ = fetch(server.url, method='POST')
    assert status == 501


@pytest.mark.parametrize('value,expect', [
    ('127.0.0.1:9464', ('127.0.0.1', 9464)),
    ('[::1]:9464', ('::1', 9464)),
    (' localhost:0 ', ('localhost', 0)),
    ('0.0.0.0:65535', ('0.0.0.0', 65535)),
])
def test_listen_addresses(value, expect):
    assert metrics.parse_listen(value) == expect


@pytest.mark.parametrize('value', ['9464', ':9464', '127.0.0.1',
                                   '127.0.0.1:', '::1:9464', '[::1]',
                                   '127.0.0.1:65536', 'host:port',
                                   '127.0.0.1:-1'])
def test_malformed_listen_addresses_name_the_option(value):
    with pytest.raises(metrics.ListenError, match='metrics_listen'):
        metrics.MetricsServer(value)


def test_an_address_in_use_is_refused_naming_the_option():
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(metrics.ListenError) as err:
            metrics.MetricsServer('127.0.0.1:%d' % port)
    text = str(err.value)
    assert 'metrics_listen' in text and str(port) in text
    assert 'in use' in text


def test_close_frees_the_port_and_ends_the_thread(served):
    agent, server = served
    assert Scrape(server).value('loki_memtier_intervals_total') == 0
    server.close()
    assert not any(t.name == 'loki-metrics' for t in threading.enumerate())
    with pytest.raises(OSError):
        fetch(server.url)
    again = metrics.MetricsServer('127.0.0.1:%d' % server.port)
    again.close()   # never served: closing must not wait for a loop


def test_ipv6_loopback(tmp_path):
    if not socket.has_ipv6:
        pytest.skip('no IPv6')
    try:
        server = metrics.MetricsServer('[::1]:0')
    except metrics.ListenError as exc:
        pytest.skip('no IPv6 loopback here: %s' % exc)
    try:
        assert server.is_loopback()
        server.serve(make_agent(make_conf(tmp_path)))
        assert server.url == 'http://[::1]:%d/metrics' % server.port
        assert Scrape(server).value('loki_memtier_guests') == 0
    finally:
        server.close()


# -- the service --------------------------------------------------------------

def run_service(tmp_path, conf_text):
    path = tmp_path / 'memtier.conf'
    path.write_text(conf_text)
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), 'loki-memtier-agent'),
         '--config-file', str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=120)


def test_service_refuses_a_metrics_port_in_use(tmp_path):
    # The port is checked before the host's tiers, so this machine's single
    # tier does not hide the message.
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run_service(tmp_path, '[memtier]\nwatchers = process\n'
                          'registration_dir = %s\nrpc_enabled = false\n'
                          'metrics_listen = 127.0.0.1:%d\n'
                          % (tmp_path, port))
    assert res.returncode == 1, res.stdout
    assert 'cannot start' in res.stdout
    assert 'metrics_listen' in res.stdout and '%d' % port in res.stdout
    assert 'in use' in res.stdout
    assert 'memory tier' not in res.stdout


def test_service_refuses_a_malformed_metrics_address(tmp_path):
    res = run_service(tmp_path, '[memtier]\nmetrics_listen = 9464\n'
                                'rpc_enabled = false\n')
    assert res.returncode == 1, res.stdout
    assert 'cannot start' in res.stdout and 'metrics_listen' in res.stdout
    assert 'HOST:PORT' in res.stdout


def test_the_option_is_off_by_default(tmp_path):
    assert make_conf(tmp_path).metrics_listen == ''
