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
        self.assertIn('loki:dram_gb', body)

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
