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

"""The demo: the real tiering agent on a two-tier kernel, with a story.

``tools/demo.sh`` boots the sandbox (tools/sandbox.py: node0 "DRAM",
node1 a slower memory-only node) and runs ``python -m
loki_nova.memtier.demo run`` in it.  That builds the agent from a
configuration file alone -- the kernel's memory tiers, the DAMON
tracker, the process watcher, the real ``move_pages`` mover -- and its
RPC server on oslo.messaging's in-memory transport, all in this process,
and starts three workload processes registered like guests (a QEMU guest
per tenant would not fit the time budget under TCG):

* ``web``, static: a fixed DRAM share (its floor) for a steady hot set;
* ``batch``, on-demand: its floor guaranteed, more while DRAM is free;
  its hot set moves half-way through;
* ``idle``, on-demand: mostly idle, so it keeps little more than its
  floor.

Phases: the agent takes over (first touch put the pages in DRAM while
it had room; the agent demotes down to the budgets, then grows ``batch``
to its hot set);
``batch``'s hot set moves (the agent follows it); ``reserve_dram`` for a
guest about to start pulls ``batch`` back to its floor before it
answers; the reservation expires (no such guest appears) and ``batch``
grows again.  Each interval prints a table; ``--json`` writes the whole
timeline, which ``python -m loki_nova.memtier.demo plot`` turns into a
PNG (on the host, where matplotlib is quick).

``run`` refuses to start anywhere but inside the sandbox guest: it
drives DAMON and moves pages, and on a real machine both belong to the
machine.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
import warnings

LOG = logging.getLogger(__name__)
MiB = 1024 * 1024
PAGE = 4096
#: The host name the agent serves RPC as in the demo.
HOST = 'sandbox'
#: Columns of the live table, in order.
TABLE_COLUMNS = ('interval', 't (s)', 'guest', 'policy', 'DRAM MiB',
                 'slow MiB', 'hot MiB', 'budget MiB', 'moved MiB')
_WIDTHS = (8, 7, 6, 9, 8, 8, 7, 10, 9)
SUMMARY_VERSION = 1
#: Characters per line of the picture's title.
TITLE_CHARS = 170


@dataclasses.dataclass(frozen=True)
class GuestSpec:
    """One workload registered like a guest."""

    name: str
    role: str
    policy: str
    size_mb: int
    hot_mb: int
    floor_mb: int
    ceiling_mb: int = None
    #: Where the hot set moves to at the ``move`` phase (None: it stays).
    moved_hot_offset_mb: int = None
    #: Rest between passes over the hot set (the vCPUs are shared).
    pause_ms: float = 40


GUESTS = (
    GuestSpec('web', 'static: a fixed DRAM share', 'static', 48, 12, 16),
    GuestSpec('batch', 'on-demand: its hot set moves', 'on_demand', 128, 48,
              24, 96, moved_hot_offset_mb=72),
    GuestSpec('idle', 'on-demand, mostly idle', 'on_demand', 48, 2, 8, 32,
              pause_ms=500),
)
#: DRAM above the floors that the agent may share out (the rest of node0
#: is the host reserve), and what reserve_dram asks for: all of it.
SPARE_MB = 48


@dataclasses.dataclass
class Schedule:
    """When things happen, in agent intervals.  Under TCG an interval
    takes longer than ``interval_s`` (2-5 s here): the agent's work,
    three kdamonds and the workloads share the sandbox's vCPUs."""

    interval_s: float = 1.0
    move_at: int = 6
    reserve_at: int = 13
    intervals: int = 22
    reservation_ttl_s: int = 8
    reserve_mb: int = SPARE_MB


QUICK = Schedule(move_at=4, reserve_at=8, intervals=12, reservation_ttl_s=5)


# ------------------------------------------------------------ the table --

def _cells(values):
    return '  '.join(str(v).rjust(w) if i not in (2, 3) else
                     str(v).ljust(w)
                     for i, (v, w) in enumerate(zip(values, _WIDTHS)))


def table_header():
    """The live table's header line and its rule."""
    header = _cells(TABLE_COLUMNS).rstrip()
    return [header, '-' * len(header)]


def table_rows(row, specs):
    """The table's lines for one timeline row (see ``Recorder``)."""
    lines = []
    first = True
    for spec in specs:
        g = row['guests'].get(spec.name)
        if g is None:
            continue
        moved = None if g.get('promoted_mb') is None else \
            g['promoted_mb'] + g['demoted_mb']
        lines.append(_cells((
            row['interval'] if first else '',
            '%.1f' % row['t'] if first else '',
            spec.name, spec.policy,
            _number(g['dram_mb']), _number(g['slow_mb']),
            _number(g.get('hot_mb')), _number(g.get('budget_mb')),
            _number(moved, '%.1f'))).rstrip())
        first = False
    return lines


def _number(value, form='%.0f'):
    return '-' if value is None else form % value


class Recorder:
    """An interval listener of the agent: keeps the timeline, prints the
    table, and keeps each guest's heat and tiers of the last interval."""

    def __init__(self, agent, specs, started, say, names=None):
        self.agent = agent
        self.specs = specs
        #: The agent's key of a guest -> its spec's name (the same
        #: unless given: Nova's guests are keyed by instance uuid).
        self.names = names or {}
        self.started = started
        self.say = say
        self.rows = []
        self.events = []
        self.phase = 'the agent takes over'
        self._printed_phase = None
        self.final = {}
        #: A reservation (instance uuid) whose expiry is to be told.
        self.reservation = None
        #: The last interval this listener has seen (and printed).
        self.seen = 0
        self._lock = threading.Lock()

    def event(self, label, interval=None):
        with self._lock:
            t = time.time() - self.started
            n = self.seen if interval is None else interval
            self.events.append({'t': round(t, 2), 'interval': n,
                                'label': label})
        self.say('>>> %.1f s, interval %d: %s' % (t, n, label))

    def __call__(self, report):
        guests = {}
        for key, st in report.guests.items():
            if not st.tiered:
                continue
            name = self.names.get(key, key)
            guests[name] = {f: round(getattr(st, f), 2) for f in (
                'dram_mb', 'slow_mb', 'hot_mb', 'budget_mb', 'promoted_mb',
                'demoted_mb')}
            guests[name]['failed_pages'] = st.failed_pages
            m = self.agent.guests.get(key)
            if m is not None and m.tier is not None:
                self.final[name] = (m.planner.heat.copy(), m.tier.copy())
        if not guests:
            self.seen = report.number
            return
        held = self.reservation
        if held is not None and held not in self.agent.reservations:
            self.reservation = None
            self.phase = 'the reservation expired: no guest came'
            self.event('the reservation expired; its DRAM is free again',
                       report.number)
        self.record({'interval': report.number,
                     't': round(report.ended - self.started, 2),
                     'phase': self.phase, 'guests': guests})
        self.seen = report.number

    def record(self, row):
        """Keep one timeline row and print it."""
        with self._lock:
            self.rows.append(row)
        lines = []
        if self._printed_phase != row['phase']:
            self._printed_phase = row['phase']
            lines += ['', '== %s ==' % row['phase']] + table_header()
        lines += table_rows(row, self.specs)
        self.say('\n'.join(lines))


# ---------------------------------------------------------- workloads --

class WorkloadProcess:
    """One ``loki_nova.memtier.workload`` process, started and ended here
    (by its pid only)."""

    def __init__(self, spec, register_dir, timeout=180):
        self.spec = spec
        self.timeout = timeout
        argv = [sys.executable, '-m', 'loki_nova.memtier.workload',
                '--size-mb', spec.size_mb, '--hot-mb', spec.hot_mb,
                '--pause-ms', spec.pause_ms, '--register-dir', register_dir,
                '--name', spec.name, '--policy', spec.policy,
                '--floor-mb', spec.floor_mb]
        if spec.ceiling_mb is not None:
            argv += ['--ceiling-mb', spec.ceiling_mb]
        self.proc = subprocess.Popen([str(a) for a in argv],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.pid = self.proc.pid
        self._buf = b''

    def reply(self):
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while b'\n' not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('workload %s (pid %d) did not answer in '
                                   '%.0f s' % (self.spec.name, self.pid,
                                               self.timeout))
            if select.select([fd], [], [], left)[0]:
                data = os.read(fd, 4096)
                if not data:
                    raise EOFError('workload %s (pid %d) exited, status %s'
                                   % (self.spec.name, self.pid,
                                      self.proc.poll()))
                self._buf += data
        line, self._buf = self._buf.split(b'\n', 1)
        return line.decode().strip()

    def wait_ready(self):
        words = self.reply().split()
        if len(words) != 4 or words[0] != 'ready' or \
                int(words[1]) != self.pid:
            raise RuntimeError('workload %s said %r, not ready'
                               % (self.spec.name, words))
        self.start, self.end = int(words[2], 16), int(words[3], 16)

    def placement_mb(self, fast_nodes):
        """(MiB in DRAM, MiB elsewhere) of its memory, page by page."""
        import numpy as np

        from loki_nova.memtier import mover
        pages = np.arange(self.start, self.end, PAGE, dtype=np.uint64)
        nodes = mover.move_pages(self.pid, pages)
        fast = np.isin(nodes, list(fast_nodes))
        return (float(fast.sum()) * PAGE / MiB,
                float(((nodes >= 0) & ~fast).sum()) * PAGE / MiB)

    def command(self, text):
        self.proc.stdin.write(text.encode() + b'\n')
        self.proc.stdin.flush()
        return self.reply()

    def close(self):
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, TimeoutError, EOFError,
                                     subprocess.TimeoutExpired):
                self.command('exit')
                self.proc.wait(30)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


# ------------------------------------------------------------ the run --

def write_conf(path, *, registration_dir, state_dir, interval_s,
               reserve_mb, reservation_ttl_s, tracker='damon'):
    """The agent's configuration file for the demo."""
    settings = [('watchers', 'process'),
                ('registration_dir', registration_dir),
                ('state_dir', state_dir), ('tracker', tracker),
                ('interval', interval_s), ('host', HOST),
                ('dram_reserve_mb', reserve_mb),
                # The sandbox's DRAM node (1 GiB) is smaller than the
                # default dram_free_min_mb; the reserve models its size.
                ('dram_free_min_mb', 0),
                ('reservation_ttl', reservation_ttl_s),
                ('usage_interval', 0), ('metrics_listen', '')]
    text = '[DEFAULT]\ntransport_url = fake:/\n[memtier]\n' + ''.join(
        '%s = %s\n' % kv for kv in settings)
    with open(path, 'w') as fh:
        fh.write(text)
    return path


def load_conf(path):
    from oslo_config import cfg
    import oslo_messaging as messaging

    from loki_nova.conf import memtier as memtier_conf
    from loki_nova.memtier import rpc
    conf = cfg.ConfigOpts()
    memtier_conf.register_opts(conf)
    rpc.prepare_conf(conf)
    messaging.get_rpc_transport(conf)   # registers the transport options
    conf(['--config-file', path], project='loki-nova')
    return conf


def _node_mb(node):
    with open('/sys/devices/system/node/node%d/meminfo' % node) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 4 and parts[2] == 'MemTotal:':
                return int(parts[3]) // 1024
    return None


def run(schedule, specs=GUESTS, json_path=None, out=None, workdir=None):
    """The demo itself (inside the sandbox); returns the summary dict."""
    out = out or sys.stdout
    began = time.monotonic()
    # oslo.messaging imports eventlet, which the demo never uses; its DNS
    # part alone is a third of that import, minutes under a loaded TCG.
    os.environ.setdefault('EVENTLET_NO_GREENDNS', 'yes')
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    console = []
    printing = threading.Lock()

    def say(text):
        # One write per message: the agent's thread and the thread that
        # waits for reserve_dram both print.
        with printing:
            console.append(text)
            out.write(text + '\n')
            out.flush()

    workdir = workdir or tempfile.mkdtemp(prefix='loki-demo-')
    registration_dir = os.path.join(workdir, 'guests')
    os.makedirs(registration_dir, exist_ok=True)
    say('starting the workloads, registered like guests: %s' % '; '.join(
        '%s (%s, %d MiB, %d MiB hot, floor %d%s)' % (
            s.name, s.policy, s.size_mb, s.hot_mb, s.floor_mb,
            '' if s.ceiling_mb is None else ', ceiling %d' % s.ceiling_mb)
        for s in specs))
    workloads = {}
    answers = []
    with contextlib.ExitStack() as stack:
        # The workloads start first: under TCG their start-up (Python,
        # NumPy, filling their memory) overlaps the agent's imports.
        for spec in specs:
            w = WorkloadProcess(spec, registration_dir)
            stack.callback(w.close)
            workloads[spec.name] = w

        from loki_nova.memtier import backend
        backend.use_threading()     # as the agent's service does
        import oslo_messaging as messaging

        from loki_nova.memtier import agent as agent_mod
        from loki_nova.memtier import kernfs
        from loki_nova.memtier import rpc
        from loki_nova.memtier import service
        from loki_nova.memtier import topology as topology_mod

        topology = topology_mod.discover(kernfs.KernelFS('/'))
        floors = sum(s.floor_mb for s in specs)
        reserve = topology.fast_mb - floors - SPARE_MB
        if reserve < 0:
            raise SystemExit('the fast tier (%d MiB) is too small for the '
                             'demo' % topology.fast_mb)
        conf = load_conf(write_conf(
            os.path.join(workdir, 'memtier.conf'),
            registration_dir=registration_dir,
            state_dir=os.path.join(workdir, 'state'),
            interval_s=schedule.interval_s, reserve_mb=reserve,
            reservation_ttl_s=schedule.reservation_ttl_s))
        say('memory tiers: %s' % topology.describe())
        say('agent: interval %.1f s, DAMON tracker, move_pages mover, %d MiB '
            'chunks; DRAM for the guests: their floors (%d MiB) and %d MiB '
            'to share (the host reserve is the other %d MiB of %d)' % (
                conf.memtier.interval, conf.memtier.chunk_size_kb // 1024,
                floors, SPARE_MB, reserve, topology.fast_mb))
        for w in workloads.values():
            w.wait_ready()
        say('agent and workloads ready after %.1f s (pids %s)' % (
            time.monotonic() - began, ', '.join(
                '%s=%d' % (n, w.pid) for n, w in workloads.items())))

        agent = agent_mod.Agent(conf.memtier)
        if agent.tracker.name != 'damon':
            raise SystemExit('the demo wants the DAMON tracker, got %s'
                             % agent.tracker.name)
        fast_nodes = [n.id for n in topology.fast_nodes]
        placement = {name: w.placement_mb(fast_nodes)
                     for name, w in workloads.items()}
        started = time.time()
        recorder = Recorder(agent, specs, started, say)
        recorder.record({
            'interval': 0, 't': 0.0,
            'phase': 'before the agent: pages where first touch put them',
            'guests': {name: {'dram_mb': round(dram, 2),
                              'slow_mb': round(slow, 2), 'hot_mb': None,
                              'budget_mb': None, 'promoted_mb': None,
                              'demoted_mb': None}
                       for name, (dram, slow) in placement.items()}})
        recorder.phase = 'the agent takes over'
        agent.listeners.append(recorder)
        transport = messaging.get_rpc_transport(conf)
        bus = service.AgentMessaging(conf, agent, transport=transport)
        client = rpc.AgentClient(transport, timeout=60)
        bus.start()
        if not bus.wait_started(60):
            raise SystemExit('the agent\'s RPC server did not start')
        stack.callback(bus.stop)
        loop = threading.Thread(target=agent.run, daemon=True,
                                name='loki-agent')
        loop.start()

        def stop_agent():
            agent.shutdown()
            loop.join(60)
        stack.callback(stop_agent)

        def wait_for(number):
            """Until interval ``number`` has reported; an interval that
            takes minutes is a stalled loop."""
            seen = deadline = None
            while recorder.seen < number:
                if not loop.is_alive():
                    raise SystemExit('the agent loop ended')
                if agent.number != seen:
                    seen = agent.number
                    deadline = time.monotonic() + 180
                elif time.monotonic() > deadline:
                    raise SystemExit('the agent loop stalled at interval %d'
                                     % agent.number)
                time.sleep(0.05)

        new_uuid = str(uuid.uuid4())

        def ask_for_room():
            answer = client.reserve_dram({'request_id': 'req-demo'}, HOST,
                                         new_uuid, schedule.reserve_mb,
                                         60 + 20 * schedule.interval_s)
            answers.append(answer)
            recorder.event('reserve_dram answered %s: %s' % (
                answer['status'], answer['reason']))
            recorder.reservation = new_uuid

        mover_spec = next((s for s in specs
                           if s.moved_hot_offset_mb is not None), None)
        wait_for(1)
        if mover_spec is not None:
            wait_for(schedule.move_at)
            recorder.phase = '%s\'s hot set moves to %d MiB' % (
                mover_spec.name, mover_spec.moved_hot_offset_mb)
            workloads[mover_spec.name].command(
                'hot %d' % mover_spec.moved_hot_offset_mb)
            recorder.event('%s: hot set moved from 0 to %d MiB' % (
                mover_spec.name, mover_spec.moved_hot_offset_mb))
        wait_for(schedule.reserve_at)
        recorder.phase = 'reserve_dram(%d MiB) for a guest about to start' \
            % schedule.reserve_mb
        recorder.event('reserve_dram(%s, %d MiB) over RPC' % (
            new_uuid[:8], schedule.reserve_mb))
        asker = threading.Thread(target=ask_for_room, daemon=True)
        asker.start()
        wait_for(schedule.intervals)
        asker.join(5)
        stop_agent()
        heat = {}
        for spec in specs:
            with contextlib.suppress(Exception):
                heat[spec.name] = agent.guest_heat(spec.name)
        checksums = {name: w.command('checksum') == 'checksum ok'
                     for name, w in workloads.items()}
    say('')
    say('memory checksums after every move: %s' % ', '.join(
        '%s %s' % (n, 'intact' if ok else 'BAD')
        for n, ok in checksums.items()))
    summary = summarize(
        schedule, specs, topology, reserve, recorder, answers, heat,
        checksums, time.monotonic() - began)
    summary['console'] = console
    if json_path:
        with open(json_path, 'w') as fh:
            json.dump(summary, fh)
    return summary


def guests_summary(specs, recorder, heat):
    """Each guest's spec with its heat over time and at the end, as the
    summary (and ``plot``) has them."""
    guests = []
    for s in specs:
        d = dataclasses.asdict(s)
        final = recorder.final.get(s.name)
        hist = heat.get(s.name) or {}
        d['heat'] = {
            'final_heat': final[0].tolist() if final else [],
            'final_tier': final[1].tolist() if final else [],
            'intervals': hist.get('intervals', []),
            'rows': hist.get('heat', []),
            'dram_percent': hist.get('dram_percent', []),
            'chunk_kb': hist.get('chunk_kb', 2048),
            'hot_heat': hist.get('hot_heat'),
        }
        guests.append(d)
    return guests


def nodes_mb():
    """{node: MiB} of nodes 0 and 1, from their meminfo."""
    return {str(n): _node_mb(n) for n in (0, 1)}


def summarize(schedule, specs, topology, reserve, recorder, answers, heat,
              checksums, elapsed):
    guests = guests_summary(specs, recorder, heat)
    return {
        'version': SUMMARY_VERSION,
        'kernel': os.uname().release,
        'nodes_mb': nodes_mb(),
        'fast_mb': topology.fast_mb,
        'slow_mb': topology.slow_mb,
        'reserve_mb': reserve,
        'spare_mb': SPARE_MB,
        'schedule': dataclasses.asdict(schedule),
        'guests': guests,
        'intervals': recorder.rows,
        'events': recorder.events,
        'reserve_dram': answers[0] if answers else None,
        'checksums': checksums,
        'table_columns': list(TABLE_COLUMNS),
        'elapsed_s': round(elapsed, 1),
    }


# ----------------------------------------------------------- the plot --

def _series(summary, name, field):
    import numpy as np

    t, v = [], []
    for row in summary['intervals']:
        g = row['guests'].get(name)
        if g is not None:
            t.append(row['t'])
            v.append(g[field])
    return np.array(t), np.array(v, dtype=float)


def plot(summary, path):
    """Write the demo's PNG from a summary (``run``'s result): per guest,
    where its memory was over time with its hot set and DRAM budget, its
    heat per chunk over time, and the heat histogram at the end."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    guests = summary['guests']
    times = {row['interval']: row['t'] for row in summary['intervals']}
    figure, axes = pyplot.subplots(
        len(guests), 3, squeeze=False, figsize=(16, 3.4 * len(guests) + 1.6),
        gridspec_kw={'width_ratios': [3.2, 2.3, 1.5]})
    events = summary.get('events', [])
    end_t = max(times.values()) if times else 1.0
    for row_axes, g in zip(axes, guests):
        name = g['name']
        ax = row_axes[0]
        t, dram = _series(summary, name, 'dram_mb')
        _, slow = _series(summary, name, 'slow_mb')
        _, hot = _series(summary, name, 'hot_mb')
        _, budget = _series(summary, name, 'budget_mb')
        if len(t):
            ax.stackplot(t, dram, slow, colors=('#3b75af', '#f0b27a'),
                         labels=('in DRAM (node0)',
                                 'in slow memory (node1)'),
                         alpha=0.85, step='post')
            ax.step(t, budget, where='post', color='black', linewidth=1.6,
                    linestyle='--', label='DRAM budget (host arbiter)')
            ax.plot(t, hot, color='#c0392b', linewidth=2,
                    label='hot set (agent\'s estimate)')
        ax.axhline(g['floor_mb'], color='0.25', linewidth=1,
                   linestyle=':', label='floor')
        _mark_events(ax, events, '0.3')
        ax.set_xlim(0, end_t)
        ax.set_ylim(0, g['size_mb'] * 1.1)
        ax.set_ylabel('MiB')
        ceiling = '' if g.get('ceiling_mb') is None \
            else ', ceiling %d' % g['ceiling_mb']
        ax.set_title('%s -- %s (%d MiB, floor %d%s)' % (
            name, g['role'], g['size_mb'], g['floor_mb'], ceiling),
            fontsize='medium', loc='left')
        ax.grid(alpha=0.3)
        _heat_map(row_axes[1], g, times, events, end_t, figure)
        _heat_histogram(row_axes[2], g)
    for ax in axes[-1, :2]:
        ax.set_xlabel('time since the agent started (s)')
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc='lower center', ncol=len(labels),
                  fontsize='medium', frameon=False)
    nodes = summary.get('nodes_mb', {})
    told = '   '.join('(%d) %s' % (i + 1, _short(e['label']))
                      for i, e in enumerate(events))
    what = summary.get('subject', 'The loki-memtier agent')
    header = ('%s on the two-tier sandbox kernel %s (node0 DRAM %s MiB, '
              'node1 slow %s MiB): DAMON tracker, move_pages mover' % (
                  what, summary.get('kernel', ''), nodes.get('0', '?'),
                  nodes.get('1', '?')))
    # Wrapped to the figure's width (a long subject or many events would
    # run off its edges).
    lines = textwrap.wrap(header, TITLE_CHARS) + \
        textwrap.wrap(told, TITLE_CHARS)
    figure.suptitle('\n'.join(lines), fontsize='large')
    figure.tight_layout(rect=(0, 0.035, 1, 0.95))
    figure.savefig(path, dpi=90)
    pyplot.close(figure)
    return path


def _mark_events(ax, events, color):
    """A dash-dotted line at each event, numbered as in the title."""
    for i, e in enumerate(events):
        ax.axvline(e['t'], color=color, linewidth=0.8, linestyle='-.')
        ax.annotate('%d' % (i + 1), (e['t'], 1.0),
                    xycoords=('data', 'axes fraction'), xytext=(2, -11),
                    textcoords='offset points', fontsize='small',
                    color=color)


def _short(label, limit=48):
    label = label.split(':')[0] if label.startswith('reserve_dram ans') \
        else label
    return label if len(label) <= limit else label[:limit - 1] + '...'


def _heat_map(ax, g, times, events, end_t, figure):
    import numpy as np

    h = g['heat']
    rows = np.array(h.get('rows') or [], dtype=float)
    if rows.ndim != 2 or not rows.size:
        ax.text(0.5, 0.5, 'no heat recorded', ha='center', va='center',
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    t = np.array([times.get(n, np.nan) for n in h['intervals']])
    keep = ~np.isnan(t)
    rows, t = rows[keep], t[keep]
    if not len(t):
        ax.set_axis_off()
        return
    # Each column covers from its interval's end back to the one before.
    first = t[1] - t[0] if len(t) > 1 else 1.0
    edges = np.concatenate(([max(0.0, t[0] - first)], t))
    span = g['size_mb']
    y = np.linspace(0, span, rows.shape[1] + 1)
    mesh = ax.pcolormesh(edges, y, rows.T, cmap='inferno', shading='flat',
                         vmin=0, vmax=max(1.0, float(rows.max())))
    dram = np.array(h.get('dram_percent') or [], dtype=float)
    if dram.shape == (len(keep), rows.shape[1]):
        dram = dram[keep]
        centres = (edges[:-1] + edges[1:]) / 2
        ax.contour(centres, (y[:-1] + y[1:]) / 2, dram.T, levels=[50],
                   colors='#7fdbff', linewidths=1.0)
    _mark_events(ax, events, 'white')
    ax.set_xlim(0, end_t)
    ax.set_ylim(0, span)
    ax.set_ylabel('guest memory offset (MiB)')
    ax.set_title('heat per %d MiB chunk (DAMON samples); cyan outline: '
                 'in DRAM' % (h.get('chunk_kb', 2048) // 1024),
                 fontsize='medium')
    figure.colorbar(mesh, ax=ax, pad=0.01, label='heat')


def _heat_histogram(ax, g):
    import numpy as np

    h = g['heat']
    heat = np.array(h.get('final_heat') or [], dtype=float)
    tier = np.array(h.get('final_tier') or [], dtype=int)
    if not heat.size or tier.shape != heat.shape:
        ax.text(0.5, 0.5, 'no heat recorded', ha='center', va='center',
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    top = max(64.0, float(heat.max()))
    bins = np.linspace(0, top * 1.0001, 17)
    ax.hist([heat[tier == 0], heat[tier != 0]], bins=bins, stacked=True,
            color=('#3b75af', '#f0b27a'),
            label=('chunks in DRAM', 'chunks in slow memory'))
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel('heat at the end')
    ax.set_ylabel('chunks')
    ax.set_title('heat histogram at the end', fontsize='medium')
    ax.legend(fontsize='x-small', loc='upper right')
    ax.grid(alpha=0.3)


# ------------------------------------------------------------ the CLI --

def _in_sandbox():
    return os.environ.get('LOKI_SANDBOX') == '1'


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m loki_nova.memtier.demo',
        description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='verb', required=True)
    runner = sub.add_parser(
        'run', help='run the demo (inside the sandbox guest only)')
    runner.add_argument('--json', help='write the summary (timeline, heat, '
                        'events) here')
    runner.add_argument('--log', help='write the agent\'s log here (INFO)')
    runner.add_argument('--quick', action='store_true',
                        help='a shorter schedule (tests)')
    plotter = sub.add_parser('plot', help='draw the PNG from a summary')
    plotter.add_argument('summary', help='the JSON that run --json wrote')
    plotter.add_argument('--png', required=True)
    args = parser.parse_args(argv)
    if args.verb == 'plot':
        with open(args.summary) as fh:
            summary = json.load(fh)
        plot(summary, args.png)
        print('demo: the picture is %s' % os.path.abspath(args.png))
        return 0
    if not _in_sandbox():
        print('demo: "run" drives DAMON and moves pages, so it runs only '
              'inside the sandbox guest (LOKI_SANDBOX=1); use '
              'bash tools/demo.sh', file=sys.stderr)
        return 2
    handlers = [logging.StreamHandler()]
    handlers[0].setLevel(logging.WARNING)
    if args.log:
        handler = logging.FileHandler(args.log)
        handler.setLevel(logging.INFO)
        handlers.append(handler)
    logging.basicConfig(level=logging.INFO, handlers=handlers,
                        format='%(asctime)s %(levelname)s %(name)s: '
                        '%(message)s')
    summary = run(QUICK if args.quick else Schedule(), json_path=args.json)
    ok = all(summary['checksums'].values()) and \
        (summary['reserve_dram'] or {}).get('status') == 'ok'
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
