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

"""Rendering of simulation results: a table, JSON, a plot."""

import dataclasses

from loki_nova.memtier.sim import hindsight

GiB = 1024 ** 3


def as_dict(result):
    """A JSON-ready summary of one ``SimResult``."""
    config = dataclasses.asdict(result.config)
    return {
        'config': config,
        'guests': [dataclasses.asdict(g) for g in result.guests],
        'policies': {
            p.name: {
                'hit_ratio': round(p.hit_ratio, 6),
                'ratio_to_oracle': (None if p.ratio_to_oracle is None
                                    else round(p.ratio_to_oracle, 6)),
                'migrated_bytes': p.migrated_bytes,
                'amat_ratio': round(p.amat_ratio, 6),
                'slowdown': round(p.slowdown, 6),
                'guest_hit_ratio': {k: round(v, 6) for k, v
                                    in p.guest_hit_ratio.items()},
                'hit_per_interval': [round(h, 6)
                                     for h in p.hit_per_interval],
            } for p in result.policies},
        'shift_at': result.shift_at,
        'adaptation_intervals': result.adaptation_intervals,
        'hindsight': _rounded(result.hindsight),
    }


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value if value is None else round(value, 6)


def table(result, title=None):
    """Readable comparison table of one ``SimResult``."""
    config = result.config
    lines = []
    guests = ', '.join(
        '%s (%s, %d MiB, %s)' % (g.name, g.trace, g.memory_mb, g.policy)
        for g in result.guests)
    lines.append(title or 'Simulation: %s' % guests)
    lines.append(
        'DRAM %.0f%% of footprint, %d intervals of %gs (first %d are '
        'warm-up), %d KiB chunks, moves <= %g MiB/s, latency %g/%g ns, '
        'stall fraction %g'
        % (config.dram_share * 100, config.intervals, config.interval_s,
           config.warmup, config.chunk_size // 1024, config.move_mb_per_s,
           config.fast_ns, config.slow_ns, config.stall_fraction))
    header = '%-17s %10s %10s %12s %10s %10s' % (
        'policy', 'DRAM hit', 'vs oracle', 'migrated', 'AMAT', 'slowdown')
    lines.append(header)
    lines.append('-' * len(header))
    for p in result.policies:
        ratio = '-' if p.ratio_to_oracle is None \
            else '%.3f' % p.ratio_to_oracle
        lines.append('%-17s %10.4f %10s %9.2f GiB %9.3fx %9.3fx' % (
            p.name, p.hit_ratio, ratio, p.migrated_bytes / GiB,
            p.amat_ratio, p.slowdown))
    if result.shift_at is not None:
        adapted = result.adaptation_intervals
        lines.append('hot set moved at interval %d; loki back to >= 90%% of '
                     'the oracle after %s' % (
                         result.shift_at,
                         'never' if adapted is None
                         else '%d interval(s)' % adapted))
    if result.hindsight is not None:
        lines.extend(hindsight_lines(result.hindsight))
    return '\n'.join(lines)


def hindsight_lines(refs):
    """What static-best knows that no policy can (``sim.hindsight``), in
    words."""
    causal, causal_hit = hindsight.best(refs['causal'])
    exact, exact_hit = hindsight.best(refs['causal_exact'])
    return [
        'static-best chose from the intervals it is scored on; without '
        'them:',
        '  each interval against the pick from all the others, future '
        'ones too: %.4f' % refs['static_leave_one_out'],
        '  each half against the pick from the other half: %.4f'
        % refs['static_held_out'],
        '  best estimator from earlier intervals (no move cap or '
        'hysteresis): %.4f (%s) on the samples, %.4f (%s) on the true '
        'accesses' % (causal_hit, causal, exact_hit, exact),
    ]


def plot(results, path):
    """Write a PNG: DRAM hit ratio over time, one panel per result."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(len(results), 1, squeeze=False,
                                   figsize=(9, 3.2 * len(results)))
    for axis, result in zip(axes[:, 0], results):
        for p in result.policies:
            axis.plot(p.hit_per_interval, label=p.name,
                      linewidth=2 if p.name == 'loki' else 1,
                      linestyle='--' if p.name == 'oracle' else '-')
        if result.config.warmup:
            axis.axvspan(0, result.config.warmup, color='0.92')
        if result.shift_at is not None:
            axis.axvline(result.shift_at, color='0.4', linestyle=':')
        axis.set_title(', '.join('%s: %s' % (g.name, g.trace)
                                 for g in result.guests))
        axis.set_ylabel('DRAM hit ratio')
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel('interval')
    axes[0, 0].legend(loc='lower right', ncol=3, fontsize='small')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
