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

"""The loki: flavor extra specs: every combination's check, and the flavor
properties that go with a valid one."""

import re

import pytest

from loki_nova.virt import specs


@pytest.mark.parametrize('kwargs,want', [
    (dict(policy='static', dram_mb=1024), (1024, 1024)),
    (dict(policy='static', dram_percent=25), (1024, 1024)),
    (dict(policy='on_demand', dram_percent=10), (410, 4096)),
    (dict(policy='on_demand', dram_mb=512, dram_max_mb=2048), (512, 2048)),
    (dict(policy='on_demand', dram_mb=4096, dram_max_mb=4096),
     (4096, 4096)),
])
def test_valid_specs_resolve_to_floor_and_ceiling(kwargs, want):
    spec = specs.resolve(4096, **kwargs)
    assert (spec.floor_mb, spec.ceiling_mb) == want
    assert spec.policy == kwargs['policy']


def test_percent_floors_round_up():
    assert specs.floor_from_percent(1000, 33) == 330
    assert specs.floor_from_percent(1001, 33) == 331
    assert specs.resolve(4096, 'none') is None


@pytest.mark.parametrize('kwargs,said', [
    (dict(policy='sometimes'), 'loki:memory_tier_policy must be one of'),
    (dict(policy='static'), 'needs exactly one of loki:dram_mb and '
                            'loki:dram_percent (got neither)'),
    (dict(policy='static', dram_mb=1, dram_percent=1), '(got both)'),
    (dict(policy='static', dram_mb=5000), 'loki:dram_mb must be an integer '
                                          'from 1 to the flavor memory'),
    (dict(policy='static', dram_mb=0), 'loki:dram_mb must be'),
    (dict(policy='static', dram_percent=101), 'loki:dram_percent must be'),
    (dict(policy='static', dram_percent='25'), 'loki:dram_percent must be'),
    (dict(policy='static', dram_mb=512, dram_max_mb=1024),
     'loki:dram_max_mb applies only to on_demand'),
    (dict(policy='on_demand', dram_mb=512, dram_max_mb=256),
     'loki:dram_max_mb must be an integer from the floor (512 MiB)'),
    (dict(policy='on_demand', dram_mb=512, dram_max_mb=8192),
     'to the flavor memory (4096 MiB)'),
    (dict(policy='none', dram_mb=512), 'loki:dram_mb applies only to a '
                                       'static or on_demand'),
])
def test_invalid_specs_name_the_spec_and_what_is_valid(kwargs, said):
    with pytest.raises(specs.SpecError) as err:
        specs.resolve(4096, **kwargs)
    assert said in str(err.value)


def test_properties_of_a_tiered_flavor_split_its_memory():
    props = dict(specs.flavor_properties(4096, 'static', dram_percent=25))
    assert props == {
        'loki:memory_tier_policy': 'static',
        'loki:dram_percent': '25',
        'resources:MEMORY_MB': '1024',
        'resources:CUSTOM_LOKI_SLOW_MEMORY_MB': '3072',
        'trait:CUSTOM_LOKI_TIERED_MEMORY': 'required',
    }
    assert specs.flavor_properties(4096, 'none') == [
        ('loki:memory_tier_policy', 'none')]


@pytest.mark.parametrize('extra,want', [
    ({}, None),
    ({specs.POLICY: 'none'}, None),
    ({specs.POLICY: ' static ', specs.DRAM_PERCENT: '25'},
     specs.TierSpec('static', 1024, 1024)),
    ({specs.POLICY: 'on_demand', specs.DRAM_MB: '512',
      specs.DRAM_MAX_MB: '2048'}, specs.TierSpec('on_demand', 512, 2048)),
])
def test_extra_specs_resolve(extra, want):
    assert specs.from_extra_specs(4096, extra) == want


@pytest.mark.parametrize('extra,said', [
    ({specs.DRAM_MB: '512'}, 'loki:dram_mb without loki:memory_tier_policy'),
    ({specs.POLICY: 'static', specs.DRAM_MB: 'lots'},
     "loki:dram_mb must be a whole number written with the digits 0-9 only "
     "(no sign, blanks or separators), got 'lots'"),
    ({specs.POLICY: 'static', specs.DRAM_MB: '5000'},
     'loki:dram_mb must be an integer from 1 to the flavor memory'),
])
def test_extra_spec_errors_name_the_spec(extra, said):
    with pytest.raises(specs.SpecError, match=re.escape(said)):
        specs.from_extra_specs(4096, extra)


def test_resources_split_checked_against_floor():
    spec = specs.from_extra_specs(
        4096, {specs.POLICY: 'static', specs.DRAM_MB: '1024'})
    consistent = dict(specs.flavor_properties(4096, 'static', dram_mb=1024))
    assert specs.check_resources(4096, consistent, spec) is True
    assert specs.check_resources(4096, {}, spec) is False
    partial = {'resources:MEMORY_MB': '1024'}
    with pytest.raises(specs.SpecError, match=re.escape(
            'resources:CUSTOM_LOKI_SLOW_MEMORY_MB=unset contradicts loki '
            'floor 1024 MiB; valid: resources:MEMORY_MB=1024, '
            'resources:CUSTOM_LOKI_SLOW_MEMORY_MB=3072')):
        specs.check_resources(4096, partial, spec)
    wrong = dict(consistent, **{'resources:MEMORY_MB': '4096'})
    with pytest.raises(specs.SpecError, match='resources:MEMORY_MB=4096'):
        specs.check_resources(4096, wrong, spec)


@pytest.mark.parametrize('value', [
    ' 512', '512 ', '+512', '1_024',
    '\u0665\u0661\u0662', '\uff15\uff11\uff12',   # Arabic-Indic, fullwidth
    '5\u00b2', '-512', '0x200', '', '512.0'])
def test_numbers_are_plain_ascii_digits_only(value):
    # int() takes the first six; isdigit() alone would take 5\u00b2.
    extra = {specs.POLICY: 'static', specs.DRAM_MB: value}
    with pytest.raises(specs.SpecError, match=re.escape(
            'loki:dram_mb must be a whole number written with the digits '
            '0-9 only (no sign, blanks or separators), got %r' % value)):
        specs.from_extra_specs(4096, extra)
    assert specs.from_extra_specs(
        4096, dict(extra, **{specs.DRAM_MB: '0512'})).floor_mb == 512


@pytest.mark.parametrize('key,said', [
    ('LOKI:dram_mb', 'LOKI:dram_mb is not read: extra spec keys are case '
                     'sensitive; rename it to loki:dram_mb'),
    ('Loki:memory_tier_policy', 'rename it to loki:memory_tier_policy'),
    ('loki:DRAM_PERCENT', 'rename it to loki:dram_percent'),
    ('loki:dram_gb', 'loki:dram_gb is not a loki extra spec; valid keys: '
                     'loki:memory_tier_policy, loki:dram_mb, '
                     'loki:dram_percent, loki:dram_max_mb'),
    ('LOKI:gb', 'LOKI:gb is not a loki extra spec; valid keys: '
                'loki:memory_tier_policy,'),
])
def test_keys_loki_would_ignore_are_refused(key, said):
    extra = dict(specs.flavor_properties(4096, 'static', dram_mb=1024))
    specs.check_keys(extra)
    extra[key] = '1'
    with pytest.raises(specs.SpecError, match=re.escape(said)):
        specs.check_keys(extra)


def test_other_namespaces_and_plain_keys_pass_the_key_check():
    specs.check_keys({'hw:mem_page_size': 'small', 'lokis:x': '1',
                      'xloki:y': '1', 'loki': '1', 'LOKI': '1'})
    specs.check_keys(None)
