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

"""Tests marked ``sandbox`` run inside the tiered-memory sandbox guest.

On the host (``LOKI_SANDBOX`` unset) each selected item carrying the
``sandbox`` marker is replaced by a proxy item with the same node id and
no fixtures.  The first proxy to run boots the sandbox once
(tools/sandbox.py) and runs pytest inside it on all of those node ids;
an in-guest hook (this module again, under ``LOKI_SANDBOX=1``) writes
each test's outcome as JSON lines to the writable share.  Each proxy
then reports its own test: failed with the inner traceback, skipped
with the inner reason, or passed.

If the sandbox cannot boot, the proxies fail with the reason; with
``LOKI_SANDBOX=skip`` they skip instead.

``@pytest.mark.sandbox(cpus=N, node_mib=(A, B))`` asks for N vCPUs and
nodes of A and B MiB; the boot of a batch gets the most any of its tests
asks for (default 1 vCPU, tools/sandbox.py's node sizes).
``@pytest.mark.sandbox(seconds=S)``: the test may take S seconds (default
60), which the batch's time limit adds up.
``@pytest.mark.sandbox(nested_virt=True)``: the test boots nested guests,
with libvirt and QEMU from bookworm-backports (tools/sandbox.py,
``ensure_nested_virt``; tests/libvirt_rig.prepare_sandbox binds them).

``@pytest.mark.sandbox(host=True)`` marks a test that drives the sandbox
from the host itself (it boots its own guest): it is not proxied, it
is skipped inside the guest and under ``LOKI_SANDBOX=skip``, and
``-m sandbox`` / ``-m "not sandbox"`` select it like the others.

Environment: ``LOKI_SANDBOX_TIMEOUT`` (seconds for the whole batch;
default 600 plus each test's seconds, at most 3600), ``LOKI_SANDBOX_CPUS``
(vCPUs, default 1: under TCG on this 2-core machine two vCPUs made the
sandbox tests slower), ``LOKI_SANDBOX_CACHE`` (tools/sandbox.py).
"""

import contextlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = 'sandbox'
#: Seconds a sandbox test may take unless its marker says (``seconds=``).
TEST_SECONDS = 60
# Written by the in-guest hook, on the writable share.
REPORT_ENV = 'LOKI_SANDBOX_REPORT'
REPORT_FILE = 'pytest-results.jsonl'
TIMEOUT_ENV = 'LOKI_SANDBOX_TIMEOUT'
CPUS_ENV = 'LOKI_SANDBOX_CPUS'
#: The host's environment variables the inner pytest gets too.
PASSED_ENV = ('OS_NOVA_DISABLE_EVENTLET_PATCHING',)
# Markers the inner run evaluates; the proxy must not evaluate them again
# on the host (a skipif's condition is about the guest).
INNER_ONLY_MARKERS = frozenset(
    ('skip', 'skipif', 'xfail', 'usefixtures', 'filterwarnings',
     'parametrize'))


def load_sandbox_tool():
    """tools/sandbox.py as a module (it is a script, not a package)."""
    name = 'loki_tools_sandbox'
    if name not in sys.modules:
        path = os.path.join(REPO_ROOT, 'tools', 'sandbox.py')
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def in_sandbox():
    """True inside the sandbox guest."""
    return os.environ.get('LOKI_SANDBOX') == '1'


def sandbox_skipped():
    """True where the user asked to skip the sandbox (LOKI_SANDBOX=skip)."""
    return os.environ.get('LOKI_SANDBOX') == 'skip'


def _runs_on_host(item):
    marker = item.get_closest_marker(MARKER)
    return marker is not None and bool(marker.kwargs.get('host'))


# ------------------------------------------------------------ the host --

class InnerFailure(Exception):
    """A sandbox test failed inside the guest (or got no result)."""


class SandboxBatch:
    """One sandbox boot running pytest on all the proxied node ids."""

    def __init__(self, config, nodeids, cpus=None, node_mib=None,
                 seconds=None, nested_virt=False):
        """``cpus`` / ``node_mib``: what the tests' markers ask for (the
        most of each); the defaults otherwise.  ``seconds``: what the
        tests may take, all together (default 60 each)."""
        self.config = config
        self.nodeids = list(nodeids)
        self.seconds = seconds if seconds is not None else \
            TEST_SECONDS * len(self.nodeids)
        self.cpus = cpus
        self.node_mib = node_mib
        self.nested_virt = nested_virt
        self.ran = False
        self.error = None       # why the sandbox could not run
        self.records = {}       # nodeid -> list of per-phase records
        self.result = None      # the sandbox Result of the inner pytest
        self.out_dir = None
        self.wall = 0.0

    def timeout(self):
        value = os.environ.get(TIMEOUT_ENV)
        if value:
            return float(value)
        return min(3600, 600 + self.seconds)

    def command(self):
        # Hypothesis's pytest plugin imports all of Hypothesis at start-up:
        # half a minute under TCG; a test that uses Hypothesis still can.
        argv = [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider',
                '-p', 'no:hypothesispytest', '-q', '-rfEs',
                '--continue-on-collection-errors',
                '--rootdir', str(self.config.rootpath)]
        tbstyle = getattr(self.config.option, 'tbstyle', 'auto')
        if tbstyle and tbstyle != 'auto':
            argv.append('--tb=%s' % tbstyle)
        return argv + ['--'] + self.nodeids

    def machine(self):
        """The guest's vCPUs and node sizes: $LOKI_SANDBOX_CPUS or what a
        marker asks for (else 1), and the node sizes markers ask for."""
        cpus = max(int(os.environ.get(CPUS_ENV) or 1), self.cpus or 1)
        found = {'cpus': cpus}
        if self.node_mib:
            found['node_mib'] = tuple(self.node_mib)
        if self.nested_virt:
            found['nested_virt'] = True
        return found

    def env(self, tool):
        env = {REPORT_ENV: '%s/%s' % (tool.GUEST_OUT, REPORT_FILE)}
        # Nova picks its concurrency mode from this once per process; the
        # inner pytest runs in the mode of the outer one.
        for name in PASSED_ENV:
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    def run(self):
        if self.ran:
            return
        self.ran = True
        if sandbox_skipped():
            self.error = 'LOKI_SANDBOX=skip'
            return
        tool = load_sandbox_tool()
        self.out_dir = tempfile.mkdtemp(prefix='loki-sandbox-pytest-')
        started = time.monotonic()
        progress = _Progress(self.config, os.path.join(self.out_dir,
                                                       REPORT_FILE),
                             len(self.nodeids), started)
        progress.say('booting the two-tier guest for %d test%s (they run '
                     'there one after another; each is listed as it ends)'
                     % (len(self.nodeids),
                        '' if len(self.nodeids) == 1 else 's'))
        try:
            self.result = tool.run(
                self.command(), cwd=str(self.config.rootpath),
                env=self.env(tool),
                timeout=self.timeout(), out_dir=self.out_dir,
                keep=[sys.prefix], stream=progress, **self.machine())
        except tool.SandboxError as error:
            self.error = 'the sandbox could not run the tests: %s' % error
        # Tests that ended after the guest's last output.
        progress.write(b'')
        self.wall = time.monotonic() - started
        self._read_records()

    def _read_records(self):
        path = os.path.join(self.out_dir, REPORT_FILE)
        try:
            with open(path) as fh:
                lines = fh.readlines()
        except OSError:
            return
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue    # a line cut short by a dying guest
            self.records.setdefault(record['nodeid'], []).append(record)

    def cleanup(self):
        if self.out_dir:
            shutil.rmtree(self.out_dir, ignore_errors=True)

    def output_tail(self, limit=6000):
        if self.result is None:
            return ''
        return self.result.output[-limit:]

    def inner_summary(self):
        """The inner pytest's closing line ('3 passed in 40.1s'), or ''."""
        if self.result is None:
            return ''
        for line in reversed(self.result.output.splitlines()):
            line = line.strip().strip('=').strip()
            if re.search(r'\bin [\d.]+s\b', line) and re.search(
                    r'\d+ (passed|failed|skipped|error|deselected|xfailed|'
                    r'xpassed|warnings?|errors)|no tests ran', line):
                return line
        return ''

    def outcome(self, nodeid):
        """``(outcome, text)`` for *nodeid*: passed/failed/skipped/xfailed,
        or error when the sandbox could not run it.

        A test with no record failed (the guest ended early, or the inner
        pytest did not collect it).
        """
        records = self.records.get(nodeid)
        if not records and self.error:
            # Tests that finished before a timeout keep their own results.
            return 'error', self.error
        if not records:
            for collector, found in self.records.items():
                if found[0]['when'] == 'collect' and (
                        nodeid.startswith(collector + '::') or
                        nodeid.startswith(collector.rstrip('/') + '/')):
                    return 'failed', 'collecting %s in the sandbox ' \
                        'failed:\n%s' % (collector, found[0]['longrepr'])
            status = self.result.returncode if self.result else None
            return 'failed', (
                'no result for %s from the sandbox run (inner pytest exit '
                'status %s); its output ends:\n%s' % (
                    nodeid, status, self.output_tail()))
        failed = [r for r in records if r['outcome'] == 'failed']
        if not failed and not any(r['when'] == 'teardown' for r in records):
            return 'failed', '%s did not finish in the sandbox: %s' % (
                nodeid, self.error or 'the guest ended early; its output '
                'ends:\n' + self.output_tail())
        if failed:
            # The first line is what pytest's short summary shows.
            parts = ['in the sandbox: %s' % (
                failed[0].get('crash') or 'failed in ' + failed[0]['when'])]
            for record in failed:
                parts.append('%s (in the sandbox, %s)' % (
                    record['longrepr'] or 'failed', record['when']))
            # Each phase's report repeats the sections of the phases
            # before it; show each once.
            sections = []
            for record in records:
                for section in record.get('sections') or []:
                    if section not in sections:
                        sections.append(section)
            for title, content in sections:
                parts.append('%s\n%s' % (
                    (' %s ' % title).center(70, '-'), content))
            return 'failed', '\n'.join(parts)
        for record in records:
            if record['outcome'] == 'skipped':
                if record.get('wasxfail') is not None:
                    return 'xfailed', record['wasxfail']
                return 'skipped', record.get('skip_reason') or 'skipped'
        return 'passed', ''


class _Progress:
    """Given to the sandbox as its output stream: the guest's output is
    kept in the run's result anyway, so this only looks, whenever output
    arrives, for tests the inner pytest has finished (its report file is
    on the writable share) and names each on the terminal, so a batch of
    many minutes shows it is moving."""

    def __init__(self, config, report_path, total, started):
        self.config = config
        self.report_path = report_path
        self.total = total
        self.started = started
        self.offset = 0
        self.done = 0

    def say(self, text):
        reporter = self.config.pluginmanager.get_plugin('terminalreporter')
        capman = self.config.pluginmanager.get_plugin('capturemanager')
        if reporter is None:
            return
        guard = (capman.global_and_fixture_disabled() if capman is not None
                 else contextlib.nullcontext())
        with guard:
            reporter.write_line('sandbox: %s' % text)

    def write(self, data):
        try:
            with open(self.report_path) as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return len(data)
        complete = chunk[:chunk.rfind('\n') + 1]
        self.offset += len(complete.encode())
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            ended = record.get('when') == 'call' or (
                record.get('outcome') != 'passed'
                and record.get('when') in ('setup', 'collect'))
            if ended:
                self.done += 1
                self.say('[%d/%d] %s %s (%.0f s in, %.0f s since the boot '
                         'began)' % (self.done, self.total,
                                     record['outcome'], record['nodeid'],
                                     record.get('duration') or 0.0,
                                     time.monotonic() - self.started))
        return len(data)

    def flush(self):
        pass


class SandboxProxy(pytest.Item):
    """Stands in on the host for a test that runs in the sandbox."""

    def __init__(self, *, batch, location, **kwargs):
        super().__init__(**kwargs)
        self.batch = batch
        self._location = location

    def reportinfo(self):
        return self._location

    def iter_markers_with_node(self, name=None):
        for node, mark in super().iter_markers_with_node(name):
            if mark.name not in INNER_ONLY_MARKERS:
                yield node, mark

    def runtest(self):
        self.batch.run()
        outcome, text = self.batch.outcome(self.nodeid)
        if outcome == 'error':
            if sandbox_skipped():
                raise pytest.skip.Exception(text, _use_item_location=True)
            raise InnerFailure(text)
        if outcome == 'failed':
            raise InnerFailure(text)
        if outcome == 'skipped':
            # Reported at the test, not at this line.
            raise pytest.skip.Exception(text, _use_item_location=True)
        if outcome == 'xfailed':
            pytest.xfail(text)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, InnerFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)


_BATCH = pytest.StashKey()


def _proxy_for(item, batch):
    proxy = SandboxProxy.from_parent(
        item.parent, name=item.name, nodeid=item.nodeid, batch=batch,
        location=item.reportinfo())
    proxy.own_markers.extend(m for m in item.own_markers
                             if m.name not in INNER_ONLY_MARKERS)
    proxy.extra_keyword_matches.update(item.listextrakeywords())
    return proxy


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Replace the selected sandbox tests (-k/-m already applied)."""
    if in_sandbox():
        return
    chosen = [item for item in items
              if item.get_closest_marker(MARKER) is not None
              and not _runs_on_host(item)]
    if not chosen:
        return
    cpus, node_mib, seconds, nested_virt = None, None, 0, False
    for item in chosen:
        kwargs = item.get_closest_marker(MARKER).kwargs
        seconds += int(kwargs.get('seconds') or TEST_SECONDS)
        if kwargs.get('cpus'):
            cpus = max(cpus or 1, int(kwargs['cpus']))
        nested_virt = nested_virt or bool(kwargs.get('nested_virt'))
        if kwargs.get('node_mib'):
            node_mib = [max(a, b) for a, b in zip(
                node_mib or (0, 0), kwargs['node_mib'])]
    batch = SandboxBatch(config, [item.nodeid for item in chosen],
                         cpus=cpus, node_mib=node_mib, seconds=seconds,
                         nested_virt=nested_virt)
    config.stash[_BATCH] = batch
    proxies = {id(item): _proxy_for(item, batch) for item in chosen}
    items[:] = [proxies.get(id(item), item) for item in items]


def pytest_runtest_setup(item):
    if _runs_on_host(item):
        if in_sandbox():
            reason = 'drives the sandbox from the host'
        elif sandbox_skipped():
            reason = 'LOKI_SANDBOX=skip'
        else:
            return
        raise pytest.skip.Exception(reason, _use_item_location=True)


def pytest_terminal_summary(terminalreporter, config):
    batch = config.stash.get(_BATCH, None)
    if batch is None or not batch.ran or batch.error == 'LOKI_SANDBOX=skip':
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep('-', 'sandbox')
    if batch.result is not None:
        result = batch.result
        count = len(batch.nodeids)
        write('sandbox: one boot for %d test%s: %.1fs wall (guest booted in '
              '%.1fs, inner pytest ran %.1fs, exit %d)' % (
                  count, '' if count == 1 else 's', batch.wall,
                  result.boot_seconds or 0, result.command_seconds or 0,
                  result.returncode))
        write('sandbox: inner pytest: %s' % (
            batch.inner_summary() or 'no summary line'))
        if config.option.verbose > 0:
            for line in result.output.splitlines():
                write('sandbox| ' + line)
    else:
        write('sandbox: %s (%.1fs)' % (batch.error, batch.wall))


def pytest_unconfigure(config):
    batch = config.stash.get(_BATCH, None)
    if batch is not None:
        batch.cleanup()


# ----------------------------------------------------------- the guest --

class _Reporter:
    """Appends each test phase's outcome to $LOKI_SANDBOX_REPORT."""

    def __init__(self, path):
        self.path = path

    def write(self, record):
        # One line per write, flushed at once: a guest that dies mid-run
        # still leaves the finished tests' results.
        with open(self.path, 'a') as fh:
            fh.write(json.dumps(record) + '\n')

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report):
        record = {'nodeid': report.nodeid, 'when': report.when,
                  'outcome': report.outcome,
                  'duration': getattr(report, 'duration', 0.0),
                  'longrepr': None, 'skip_reason': None,
                  'wasxfail': getattr(report, 'wasxfail', None),
                  'sections': [list(s) for s in report.sections]}
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = report.longrepr[2]
            record['skip_reason'] = re.sub(r'^Skipped: ', '', reason)
        elif report.longrepr is not None:
            record['longrepr'] = str(report.longrepr)
            crash = getattr(report.longrepr, 'reprcrash', None)
            record['crash'] = getattr(crash, 'message', None)
        self.write(record)

    @pytest.hookimpl
    def pytest_collectreport(self, report):
        if report.failed:
            self.write({'nodeid': report.nodeid, 'when': 'collect',
                        'outcome': 'failed',
                        'longrepr': str(report.longrepr), 'sections': []})


def pytest_configure(config):
    path = os.environ.get(REPORT_ENV)
    if in_sandbox() and path:
        config.pluginmanager.register(_Reporter(path), 'loki-sandbox-report')
