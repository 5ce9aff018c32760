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

"""The demo (tools/demo.sh, loki_nova/memtier/demo.py).

* On the host: the live table's columns and rows, and the PNG drawn from
  a synthetic timeline with the summary's layout (written, readable, not
  blank); ``run`` refuses to start outside the sandbox.
* In the sandbox (one test, in the suite's single sandbox boot): the
  demo's real run on a shorter schedule -- the real agent over the three
  workloads -- and its ``--json`` summary: every phase happened, the
  on-demand guest grew past its floor, ``reserve_dram`` over the
  in-memory RPC answered ``ok`` with that guest back at its floor, the
  static guest held its floor, the memory kept its checksums, and the
  summary has the layout the plot reads.

``bash tools/demo.sh`` itself (setup, its own boot, the full schedule:
about five minutes) is not run by the suite: its parts are, and a second
sandbox boot would only repeat them.
"""

import io
import json
import os

from loki_nova.memtier import demo
from tests.sandbox import INSIDE_ONLY

CHUNK_MB = 2


def synthetic_summary(intervals=20):
    """A timeline with the layout of ``demo.run``'s summary: the batch
    guest grows, its hot set moves, a reservation pulls it back."""
    specs = demo.GUESTS
    rows, heat = [], {s.name: [] for s in specs}
    for n in range(intervals + 1):
        guests = {}
        for s in specs:
            chunks = s.size_mb // CHUNK_MB
            if n == 0:
                guests[s.name] = {'dram_mb': s.size_mb, 'slow_mb': 0,
                                  'hot_mb': None, 'budget_mb': None,
                                  'promoted_mb': None, 'demoted_mb': None}
                continue
            budget = s.floor_mb
            if s.policy == 'on_demand' and s.hot_mb > s.floor_mb and \
                    not 12 <= n < 15:
                budget = s.hot_mb
            guests[s.name] = {'dram_mb': budget,
                              'slow_mb': s.size_mb - budget,
                              'hot_mb': s.hot_mb, 'budget_mb': budget,
                              'promoted_mb': 2.0 * (n % 3),
                              'demoted_mb': 2.0 * (n % 2),
                              'failed_pages': 0}
            offset = (s.moved_hot_offset_mb or 0) if n >= 8 else 0
            row = [0] * chunks
            for c in range(offset // CHUNK_MB,
                           (offset + s.hot_mb) // CHUNK_MB):
                row[c] = 600 + 10 * (c % 5)
            heat[s.name].append(row)
        rows.append({'interval': n, 't': 3.0 * n, 'phase': 'phase %d'
                     % (n // 8), 'guests': guests})
    summary_guests = []
    for s in specs:
        final = heat[s.name][-1]
        budget_chunks = rows[-1]['guests'][s.name]['budget_mb'] // CHUNK_MB
        order = sorted(range(len(final)), key=lambda c: -final[c])
        tier = [1] * len(final)
        for c in order[:budget_chunks]:
            tier[c] = 0
        summary_guests.append(dict(
            name=s.name, role=s.role, policy=s.policy, size_mb=s.size_mb,
            hot_mb=s.hot_mb, floor_mb=s.floor_mb, ceiling_mb=s.ceiling_mb,
            moved_hot_offset_mb=s.moved_hot_offset_mb, pause_ms=s.pause_ms,
            heat={'final_heat': final, 'final_tier': tier,
                  'intervals': list(range(1, intervals + 1)),
                  'rows': heat[s.name],
                  'dram_percent': [[100 if t == 0 else 0 for t in tier]
                                   for _ in heat[s.name]],
                  'chunk_kb': CHUNK_MB * 1024, 'hot_heat': 64}))
    return {
        'version': demo.SUMMARY_VERSION, 'kernel': '6.12.0-test',
        'nodes_mb': {'0': 502, '1': 464}, 'fast_mb': 502, 'slow_mb': 464,
        'reserve_mb': 406, 'spare_mb': demo.SPARE_MB,
        'schedule': {}, 'guests': summary_guests, 'intervals': rows,
        'events': [{'t': 24.0, 'interval': 8, 'label': 'hot set moved'},
                   {'t': 36.0, 'interval': 12,
                    'label': 'reserve_dram(48 MiB) over RPC'},
                   {'t': 39.0, 'interval': 13,
                    'label': 'reserve_dram answered ok: room made'},
                   {'t': 45.0, 'interval': 15,
                    'label': 'the reservation expired'}],
        'reserve_dram': {'status': 'ok'}, 'checksums': {'web': True},
        'table_columns': list(demo.TABLE_COLUMNS), 'elapsed_s': 1.0,
        'console': []}


# ------------------------------------------------------------ the host --

def test_the_table_has_the_columns_and_one_line_per_guest():
    header, rule = demo.table_header()
    for column in ('DRAM MiB', 'slow MiB', 'hot MiB', 'budget MiB',
                   'moved MiB', 'guest', 'policy', 'interval'):
        assert column in header
    assert set(rule) == {'-'} and len(rule) == len(header)
    summary = synthetic_summary()
    lines = demo.table_rows(summary['intervals'][5], demo.GUESTS)
    assert len(lines) == len(demo.GUESTS)
    first = lines[0].split()
    # interval, t, guest, policy, DRAM, slow, hot, budget, moved
    assert first[:4] == ['5', '15.0', 'web', 'static']
    assert len(first) == len(demo.TABLE_COLUMNS)
    assert lines[1].split()[0] == 'batch'
    # Before the agent's first interval there is no budget or hot set.
    start = demo.table_rows(summary['intervals'][0], demo.GUESTS)[0]
    assert start.split()[-3:] == ['-', '-', '-']


def test_the_plot_is_a_readable_picture(tmp_path):
    from matplotlib import image

    path = tmp_path / 'demo.png'
    demo.plot(synthetic_summary(), str(path))
    pixels = image.imread(str(path))
    height, width, channels = pixels.shape
    assert width > 1000 and height > 800 and channels in (3, 4)
    rgb = pixels[:, :, :3]
    assert rgb.std() > 0.1, 'the picture is blank'
    colours = {tuple(p) for p in (rgb[::7, ::7] * 255).astype(int)
               .reshape(-1, 3)}
    assert len(colours) > 50


def test_plot_from_the_command_line(tmp_path, capsys):
    summary = tmp_path / 'demo.json'
    summary.write_text(json.dumps(synthetic_summary(8)))
    png = tmp_path / 'out.png'
    assert demo.main(['plot', str(summary), '--png', str(png)]) == 0
    assert png.stat().st_size > 10000
    assert str(png) in capsys.readouterr().out


def test_run_refuses_outside_the_sandbox(monkeypatch, capsys):
    monkeypatch.delenv('LOKI_SANDBOX', raising=False)
    assert demo.main(['run']) == 2
    assert 'only inside the sandbox' in capsys.readouterr().err


# ---------------------------------------------------------- the guest --

@INSIDE_ONLY[0]
@INSIDE_ONLY[1]
def test_the_demo_in_the_sandbox(tmp_path):
    schedule = demo.QUICK
    out = io.StringIO()
    path = tmp_path / 'demo.json'
    summary = demo.run(schedule, json_path=str(path), out=out,
                       workdir=str(tmp_path / 'work'))
    text = out.getvalue()
    print(text)
    assert json.loads(path.read_text())['intervals'] == summary['intervals']
    assert set(summary) == set(synthetic_summary())
    for g in summary['guests']:
        assert set(g) >= set(synthetic_summary()['guests'][0])
        assert set(g['heat']) == set(
            synthetic_summary()['guests'][0]['heat'])
        assert len(g['heat']['final_heat']) == g['size_mb'] // CHUNK_MB
    header = demo.table_header()[0]
    assert header in text
    rows = summary['intervals']
    assert rows[0]['interval'] == 0
    assert rows[-1]['interval'] >= schedule.intervals
    spec = {s.name: s for s in demo.GUESTS}

    def figures(name, when):
        return [r['guests'][name] for r in rows
                if r['interval'] > 0 and when(r['interval'])
                and name in r['guests']]

    labels = [e['label'] for e in summary['events']]
    assert any('hot set moved' in label for label in labels), labels
    assert any(label.startswith('reserve_dram answered ok')
               for label in labels), labels
    assert summary['reserve_dram']['status'] == 'ok', summary['reserve_dram']
    # The on-demand guest grew past its floor before the reservation.
    batch = spec['batch']
    before = figures('batch', lambda n: n < schedule.reserve_at)
    assert max(g['budget_mb'] for g in before) >= batch.floor_mb + 8
    assert max(g['dram_mb'] for g in before) >= batch.floor_mb + 8
    # When reserve_dram answered, it was back at its floor.
    answered = next(e for e in summary['events']
                    if e['label'].startswith('reserve_dram answered'))
    settled = summary['reserve_dram']['reason']
    assert 'room made in interval' in settled
    at = int(settled.split('room made in interval ')[1].split(',')[0])
    row = next(r for r in rows if r['interval'] == at)['guests']['batch']
    assert row['budget_mb'] == batch.floor_mb
    assert row['dram_mb'] <= batch.floor_mb + CHUNK_MB
    assert answered['interval'] >= at
    # The static guest holds its floor once the agent has had a pass.
    for g in figures('web', lambda n: n >= 2):
        assert g['budget_mb'] == spec['web'].floor_mb
        assert abs(g['dram_mb'] - spec['web'].floor_mb) <= CHUNK_MB
    # The static guest's hot set (12 MiB) fits its budget (16 MiB): at
    # the end its hot chunks are in DRAM, not behind DRAM chunks that are
    # never touched (one chunk of slack for a move still pending).
    heat = summary['guests'][0]['heat']
    assert summary['guests'][0]['name'] == 'web'
    hot = [h >= heat['hot_heat'] for h in heat['final_heat']]
    in_dram = [t == 0 for t in heat['final_tier']]
    hot_in_dram = sum(h and d for h, d in zip(hot, in_dram))
    assert hot_in_dram >= min(sum(hot), spec['web'].floor_mb // CHUNK_MB) \
        - 1, heat
    # No budget below a floor, ever; memory intact.
    for r in rows[1:]:
        for name, g in r['guests'].items():
            assert g['budget_mb'] >= spec[name].floor_mb, r
    assert summary['checksums'] == {s.name: True for s in demo.GUESTS}
    assert os.path.getsize(path) > 1000
