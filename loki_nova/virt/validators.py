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

"""The ``loki:`` extra specs for nova-api (entry point group
``nova.api.extra_spec_validators``).

nova-api checks each key on its own (microversion 2.86 and later).  Besides
the four keys, two catch-all validators refuse what loki would silently
ignore, with the valid spelling in the message: an unknown ``loki:`` key,
and a key of the namespace written in another case (``Loki:``, ``LOKI:``;
extra spec keys are case sensitive).  Checks that involve several keys or
the flavor's memory run in ``LokiDriver.spawn``.
"""

from nova.api.validation.extra_specs import base
from nova import exception

from loki_nova.virt import specs


class LokiSpecValidator(base.ExtraSpecValidator):
    """Nova's validator, with the key named in every error message."""

    def validate(self, name, value):
        try:
            if self.value['type'] is int:
                # Nova's own check is int(), which also takes ' 512',
                # '+512', '1_024' and other scripts' digits; spawn would
                # refuse them (specs.parse_whole_number).
                specs.parse_whole_number(name, value)
            super().validate(name, value)
        except specs.SpecError as exc:
            raise exception.ValidationError(
                'Validation failed for extra spec %s: %s. Valid: %s'
                % (name, exc, self._valid())) from None
        except exception.ValidationError as exc:
            raise exception.ValidationError(
                'Validation failed for extra spec %s: %s Valid: %s'
                % (name, str(exc.format_message()).replace(
                    'Validation failed; ', ''), self._valid())) from None

    def _valid(self):
        if 'enum' in self.value:
            return 'one of %s.' % ', '.join(self.value['enum'])
        return 'a whole number (digits 0-9) from %d to %s.' % (
            self.value.get('min', 0), self.value.get('max', 'any size'))


class IgnoredKeyValidator(base.ExtraSpecValidator):
    """Matches keys loki would ignore and refuses every value, saying
    which key was meant."""

    def validate(self, name, value):
        super().validate(name, value)
        error = specs.key_error(name)
        if error:
            raise exception.ValidationError(
                'Validation failed for extra spec %s' % error)


EXTRA_SPEC_VALIDATORS = [
    LokiSpecValidator(
        name=specs.POLICY,
        description=(
            'Memory tiering of the guest on a host with DRAM and a slower '
            'tier (PMem, CXL). none (the default): plain libvirt guest, all '
            'memory in DRAM. static: the guest always has exactly its DRAM '
            'floor (loki:dram_mb or loki:dram_percent) in DRAM; the rest of '
            'its memory is on the slow tier, with its hottest pages in '
            'DRAM. on_demand: the floor is guaranteed, and the guest gets '
            'more DRAM, up to loki:dram_max_mb, while the host has it free. '
            'A tiered flavor should also carry resources:MEMORY_MB=<floor>, '
            'resources:CUSTOM_LOKI_SLOW_MEMORY_MB=<memory - floor> and '
            'trait:CUSTOM_LOKI_TIERED_MEMORY=required; '
            '"loki-memtier flavor-properties" prints them. Only honoured by '
            'the loki.LokiDriver compute driver.'),
        value={'type': str, 'enum': list(specs.POLICIES)},
    ),
    LokiSpecValidator(
        name=specs.DRAM_MB,
        description=(
            'DRAM floor of a static or on_demand guest, in MiB: memory the '
            'guest always has in DRAM. At most the flavor\'s memory; give '
            'this or loki:dram_percent, not both.'),
        value={'type': int, 'min': 1},
    ),
    LokiSpecValidator(
        name=specs.DRAM_PERCENT,
        description=(
            'DRAM floor of a static or on_demand guest, in per cent of the '
            'flavor\'s memory, rounded up to whole MiB. Give this or '
            'loki:dram_mb, not both.'),
        value={'type': int, 'min': 1, 'max': 100},
    ),
    LokiSpecValidator(
        name=specs.DRAM_MAX_MB,
        description=(
            'DRAM ceiling of an on_demand guest, in MiB: the most DRAM it '
            'gets while the host has DRAM free. From the floor to the '
            'flavor\'s memory; the default is the flavor\'s memory. Not '
            'allowed for static guests.'),
        value={'type': int, 'min': 1},
    ),
    # nova-api looks a key up by name first, then tries each validator's
    # name pattern: these two are reached only by keys that are none of
    # the above.
    IgnoredKeyValidator(
        name='loki:{key}',
        description=(
            'Any other key of the loki namespace is refused, with the list '
            'of valid keys.'),
        value={'type': str},
        parameters=[{
            'name': 'key',
            'pattern': r'.+',
            'description': 'A key that is not one of the loki: keys.',
        }],
    ),
    IgnoredKeyValidator(
        name='{namespace}:{key}',
        description=(
            'Keys of the loki namespace in another case (Loki:, LOKI:) are '
            'refused: extra spec keys are case sensitive and loki would '
            'ignore them.'),
        value={'type': str},
        parameters=[{
            'name': 'namespace',
            # "loki" in any case but lower case.  No ':' in here: nova
            # takes the namespace as the name pattern up to the first ':'.
            'pattern': r'[lL][oO][kK][iI](?<!loki)',
            'description': 'loki, not all in lower case.',
        }, {
            'name': 'key',
            'pattern': r'.+',
            'description': 'Any key.',
        }],
    ),
]


def register():
    return EXTRA_SPEC_VALIDATORS
