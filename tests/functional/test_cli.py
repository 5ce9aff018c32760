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

"""``loki-memtier`` as an operator runs it: the installed console script."""

import json
import os
import shutil
import subprocess
import sys

import pytest

POLICIES = ('loki', 'first-touch', 'kernel-like', 'recency',
            'previous-interval', 'static-best', 'oracle')


def loki_memtier(*args):
    script = shutil.which('loki-memtier',
                          path=os.path.dirname(sys.executable))
    assert script, 'loki-memtier is not installed beside %s' % sys.executable
    return subprocess.run([script, *args], capture_output=True, text=True,
                          timeout=300)


def test_simulate_defaults_print_a_comparison_table():
    done = loki_memtier('simulate')
    assert done.returncode == 0, done.stderr
    for policy in POLICIES:
        assert '\n%s ' % policy in done.stdout
    assert 'zipf' in done.stdout and 'hotset' in done.stdout
    assert 'loki back to >= 90% of the oracle' in done.stdout
    # Only replays of recordings say what static-best knows.
    assert 'static-best chose from' not in done.stdout


def test_simulate_json_and_plot(tmp_path):
    plot = tmp_path / 'hit.png'
    done = loki_memtier('simulate', '--trace', 'scan', '--intervals', '30',
                        '--warmup', '5', '--memory-gib', '2', '--json',
                        '--plot', str(plot))
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert set(result['policies']) == set(POLICIES)
    for values in result['policies'].values():
        assert len(values['hit_per_interval']) == 30
        assert 0 <= values['hit_ratio'] <= 1
    assert result['policies']['oracle']['ratio_to_oracle'] == 1.0
    with open(plot, 'rb') as image:
        assert image.read(8) == b'\x89PNG\r\n\x1a\n'
    assert plot.stat().st_size > 10000


def test_simulate_several_guests_on_one_host():
    done = loki_memtier(
        'simulate', '--intervals', '20', '--warmup', '2', '--json',
        '--guest', 'name=db,trace=zipf,memory-gib=4',
        '--guest', 'name=batch,trace=scan,memory-gib=4,policy=on_demand,'
                   'floor=0.1,ceiling=0.5')
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert set(result['policies']['loki']['guest_hit_ratio']) == \
        {'db', 'batch'}


TRACES = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data',
                      'traces')


def test_simulate_replays_a_recorded_trace():
    path = os.path.join(TRACES, 'sqlite-zipf.npz')
    done = loki_memtier('simulate', '--trace-file', path, '--dram-share',
                        '0.125', '--json')
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert set(result['policies']) == set(POLICIES)
    assert result['guests'][0]['trace'] == 'file:sqlite-zipf.npz'
    assert result['guests'][0]['memory_mb'] > 0
    config = result['config']
    assert config['chunk_rule'] == 'bytes'
    assert config['warmup'] == config['intervals'] // 10
    hits = {name: p['hit_ratio'] for name, p in result['policies'].items()}
    assert all(h <= hits['oracle'] + 1e-9 for h in hits.values())
    assert len(result['policies']['loki']['hit_per_interval']) == \
        config['intervals']
    # What static-best knows: its own hit ratio, and the references
    # without the scored intervals, none above it.
    refs = result['hindsight']
    assert refs['static_in_sample'] == pytest.approx(
        hits['static-best'], abs=1e-6)
    assert refs['static_leave_one_out'] <= refs['static_in_sample']
    assert set(refs['causal']) == set(refs['causal_exact']) == {
        'previous-interval', 'cumulative', 'halved-1', 'halved-2',
        'halved-4'}
    table = loki_memtier('simulate', '--trace-file', path, '--dram-share',
                         '0.125')
    assert table.returncode == 0, table.stderr
    assert 'future ones too: %.4f' % refs['static_leave_one_out'] \
        in table.stdout
    assert 'other half: %.4f' % refs['static_held_out'] in table.stdout


def test_simulate_takes_the_tracker_window():
    path = os.path.join(TRACES, 'pgbench-tpcb.npz')
    hits = {}
    for window in ('1', 'interval'):
        done = loki_memtier('simulate', '--trace-file', path,
                            '--dram-share', '0.5', '--tracker-window',
                            window, '--json')
        assert done.returncode == 0, done.stderr
        [result] = json.loads(done.stdout)
        assert str(result['config']['tracker_window']) == window
        hits[window] = {n: p['hit_ratio']
                        for n, p in result['policies'].items()}
    # The same accesses are scored; what the tracker reports differs (on
    # this recording, chunks hot only outside each interval's last
    # snapshot are seen with the whole interval, and placed).
    assert hits['1']['oracle'] == hits['interval']['oracle']
    assert hits['interval']['previous-interval'] > \
        hits['1']['previous-interval']
    done = loki_memtier('simulate', '--trace-file', path,
                        '--tracker-window', '0')
    assert done.returncode == 2 and done.stdout == ''
    assert '--tracker-window must be a whole number >= 1 or "interval", ' \
        "got '0'" in done.stderr


def test_simulate_synthetic_traces_read_as_damons_trace():
    """A synthetic trace with the whole-interval window is read as DAMON's
    trace: by default 160 checks an interval on 0-160; 5 ms checks (1000
    an interval) read every lukewarm chunk alike and place fewer hits."""
    ratios = {}
    for extra in ((), ('--sample-us', '5000')):
        done = loki_memtier('simulate', '--trace', 'zipf', '--memory-gib',
                            '4', '--intervals', '40', '--warmup', '10',
                            '--tracker-window', 'interval', '--json',
                            *extra)
        assert done.returncode == 0, done.stderr
        [result] = json.loads(done.stdout)
        # Unset: the agent's default with the trace, 5 s / 160.
        assert result['config']['sample_us'] == (int(extra[1]) if extra
                                                 else 31250)
        ratios[extra] = result['policies']['loki']['ratio_to_oracle']
    assert ratios[()] > ratios[('--sample-us', '5000')] + 0.005, ratios
    done = loki_memtier('simulate', '--sample-us', '0')
    assert done.returncode == 2 and done.stdout == ''
    assert '--sample-us must be > 0, got 0' in done.stderr
    # Each window's own knob only.
    done = loki_memtier('simulate', '--sample-us', '5000')
    assert done.returncode == 2 and done.stdout == ''
    assert '--sample-us is for --tracker-window interval' in done.stderr
    done = loki_memtier('simulate', '--tracker-window', 'interval',
                        '--samples', '20')
    assert done.returncode == 2 and done.stdout == ''
    assert '--samples is for --tracker-window 1' in done.stderr


def test_simulate_refuses_a_file_that_is_not_a_trace(tmp_path):
    bad = tmp_path / 'notes.npz'
    bad.write_text('not a trace')
    done = loki_memtier('simulate', '--trace-file', str(bad))
    assert done.returncode == 2 and done.stdout == ''
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert '%s: is not a loki-memtier trace' % bad in lines[0]


def test_record_needs_a_pid_and_an_output():
    # Only the argument checks: recording itself needs DAMON, which runs
    # only in the sandbox (tests/sandbox/test_record.py).
    done = loki_memtier('record', '--output', 'x.npz')
    assert done.returncode == 2
    assert 'the following arguments are required: --pid' in done.stderr
    done = loki_memtier('record', '--pid', '1', '--output', 'x.npz',
                        '--range', '0x1000-0x1800')
    assert done.returncode == 2
    assert '4 KiB aligned' in done.stderr


@pytest.mark.parametrize('args, named', [
    (['--dram-share', '1.5'], '--dram-share must be in (0, 1]'),
    (['--dram-share', '0'], '--dram-share must be in (0, 1]'),
    (['--dram-share', 'lots'], '--dram-share must be a number'),
    (['--trace', 'random-walk'], "--trace: invalid choice: 'random-walk'"),
    (['--alpha', '0'], '--alpha must be > 0'),
    (['--alpha', '-1'], '--alpha must be > 0'),
    (['--guest', 'trace=zipf,size=3'], '--guest takes comma-separated'),
    (['--guest', 'policy=on_demand'], 'ceiling'),
])
def test_bad_arguments_give_one_line_and_exit_2(args, named):
    done = loki_memtier('simulate', *args)
    assert done.returncode == 2
    assert done.stdout == ''
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]


def test_flavor_properties_prints_the_flavor_set_command():
    out = loki_memtier('flavor-properties', '--memory-mb', '8192',
                       '--policy', 'on_demand', '--dram-mb', '2048',
                       '--dram-max-mb', '6144', '--flavor', 'm1.tiered')
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == 'openstack flavor set m1.tiered \\'
    props = [line.split('--property ')[1].rstrip(' \\') for line in lines[1:]]
    assert props == [
        'loki:memory_tier_policy=on_demand', 'loki:dram_mb=2048',
        'loki:dram_max_mb=6144', 'resources:MEMORY_MB=2048',
        'resources:CUSTOM_LOKI_SLOW_MEMORY_MB=6144',
        'trait:CUSTOM_LOKI_TIERED_MEMORY=required']


@pytest.mark.parametrize('args,said', [
    (['--policy', 'static', '--dram-mb', '9000'], 'loki:dram_mb must be'),
    (['--policy', 'static'], 'needs exactly one of loki:dram_mb'),
    (['--policy', 'static', '--dram-mb', '1', '--dram-percent', '5'],
     'not allowed with argument'),
    (['--policy', 'fast'], "invalid choice: 'fast'"),
])
def test_flavor_properties_refuses_bad_input_in_one_line(args, said):
    out = loki_memtier('flavor-properties', '--memory-mb', '8192', *args)
    assert out.returncode == 2
    assert said in out.stderr and out.stdout == ''
    assert len(out.stderr.strip().splitlines()) == 1
