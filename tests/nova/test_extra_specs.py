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

"""The ``loki:`` extra specs through Nova's flavor API (microversion 2.86+
validates each key with the validators our entry point registers)."""

from nova.api.validation.extra_specs import validators
from nova.tests.functional.api import client

from tests.nova import base


class TestExtraSpecAPI(base.LokiTestBase):

    def setUp(self):
        super().setUp()
        self.api = self.api_fixture.admin_api
        self.api.microversion = '2.86'
        self.flavor = self._create_flavor(memory_mb=4096)

    def _set(self, specs):
        return self.api.post_extra_spec(
            self.flavor, {'extra_specs': specs}).body['extra_specs']

    def _rejected(self, specs):
        with self.assertRaises(client.OpenStackApiException) as ctx:
            self._set(specs)
        self.assertEqual(400, ctx.exception.response.status_code)
        return ctx.exception.response.content.decode()

    def test_valid_values_accepted(self):
        for specs in (
                {'loki:memory_tier_policy': 'none'},
                {'loki:memory_tier_policy': 'static',
                 'loki:dram_percent': '25'},
                {'loki:memory_tier_policy': 'on_demand',
                 'loki:dram_mb': '1024', 'loki:dram_max_mb': '3072'}):
            body = self._set(specs)
            self.assertEqual(specs, {k: v for k, v in body.items()
                                     if k.startswith('loki:')})
        stored = self.api.get_extra_specs(self.flavor)
        self.assertEqual('on_demand', stored['loki:memory_tier_policy'])

    def test_bad_value_names_key(self):
        body = self._rejected({'loki:memory_tier_policy': 'sometimes'})
        self.assertIn('loki:memory_tier_policy', body)
        self.assertIn('none, static, on_demand', body)
        body = self._rejected({'loki:dram_percent': '150'})
        self.assertIn('loki:dram_percent', body)
        self.assertIn('1 to 100', body)
        body = self._rejected({'loki:dram_mb': '0'})
        self.assertIn('loki:dram_mb', body)

    def test_bad_type_names_key(self):
        body = self._rejected({'loki:dram_mb': 'lots'})
        self.assertIn('loki:dram_mb', body)
        self.assertIn('whole number', body)
        body = self._rejected({'loki:dram_max_mb': '1.5'})
        self.assertIn('loki:dram_max_mb', body)

    def test_unknown_loki_key_rejected(self):
        body = self._rejected({'loki:dram_gb': '4'})
        self.assertIn('loki:dram_gb is not a loki extra spec; valid keys: '
                      'loki:memory_tier_policy, loki:dram_mb, '
                      'loki:dram_percent, loki:dram_max_mb', body)

    def test_loki_keys_in_another_case_rejected(self):
        # Keys are case sensitive: loki would never read these.
        body = self._rejected({'LOKI:dram_mb': '1024'})
        self.assertIn('LOKI:dram_mb is not read: extra spec keys are case '
                      'sensitive; rename it to loki:dram_mb', body)
        body = self._rejected({'Loki:memory_tier_policy': 'static'})
        self.assertIn('rename it to loki:memory_tier_policy', body)
        body = self._rejected({'Loki:dram': '1'})
        self.assertIn('Loki:dram is not a loki extra spec; valid keys: '
                      'loki:memory_tier_policy', body)
        # Other namespaces, and Nova's own checks, are untouched.
        body = self._set({'lokis:x': '1', 'hw:mem_page_size': 'small'})
        self.assertEqual('1', body['lokis:x'])
        self.assertIn('hw:foo', self._rejected({'hw:foo': '1'}))
        self.assertNotIn('LOKI:dram_mb', self.api.get_extra_specs(
            self.flavor))

    def test_numbers_are_plain_ascii_digits(self):
        # Nova's int() would take each of these.
        for value in (' 512', '+512', '1_024', '\uff15\uff11\uff12'):
            body = self._rejected({'loki:dram_mb': value})
            self.assertIn('loki:dram_mb must be a whole number written with '
                          'the digits 0-9 only', body)
        self.assertEqual('512', self._set({'loki:dram_mb': '512'})[
            'loki:dram_mb'])

    def test_old_microversion_does_not_validate(self):
        # Before 2.86 Nova stores extra specs unchecked; spawn still checks
        # them (see test_spawn).
        self.api.microversion = '2.85'
        body = self._set({'loki:memory_tier_policy': 'sometimes'})
        self.assertEqual('sometimes', body['loki:memory_tier_policy'])

    def test_descriptions_registered_through_entry_point(self):
        for key in ('loki:memory_tier_policy', 'loki:dram_mb',
                    'loki:dram_percent', 'loki:dram_max_mb'):
            validator = validators.VALIDATORS[key]
            self.assertGreater(len(validator.description), 80, key)
            self.assertEqual('loki_nova.virt.validators',
                             type(validator).__module__)
