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

"""The ``loki:`` flavor extra specs and the flavor properties that go with
them, without importing Nova (the operator CLI and the agent use this too).

A tiered flavor of ``memory_mb`` with a DRAM floor ``F`` asks Placement for
``resources:MEMORY_MB=F``, ``resources:CUSTOM_LOKI_SLOW_MEMORY_MB=memory_mb
- F`` and ``trait:CUSTOM_LOKI_TIERED_MEMORY=required``, so that it lands
only on tiered hosts and consumes both classes.
"""

import dataclasses

POLICY = 'loki:memory_tier_policy'
DRAM_MB = 'loki:dram_mb'
DRAM_PERCENT = 'loki:dram_percent'
DRAM_MAX_MB = 'loki:dram_max_mb'
POLICIES = ('none', 'static', 'on_demand')
SLOW_RC = 'CUSTOM_LOKI_SLOW_MEMORY_MB'
TRAIT = 'CUSTOM_LOKI_TIERED_MEMORY'


class SpecError(ValueError):
    """A ``loki:`` spec (or its combination) is invalid; the message names
    the spec and says what would be valid."""


@dataclasses.dataclass(frozen=True)
class TierSpec:
    policy: str
    floor_mb: int
    #: on_demand only; the floor for static.
    ceiling_mb: int


def floor_from_percent(memory_mb, percent):
    """DRAM floor for ``percent`` of ``memory_mb``, rounded up so that the
    guarantee is never below the percentage."""
    return -(-memory_mb * percent // 100)


def resolve(memory_mb, policy, dram_mb=None, dram_percent=None,
            dram_max_mb=None):
    """Check one combination of values and return its ``TierSpec`` (None
    for policy ``none``).  Raises ``SpecError`` naming the spec."""
    if policy not in POLICIES:
        raise SpecError('%s must be one of %s, got %r'
                        % (POLICY, ', '.join(POLICIES), policy))
    if not isinstance(memory_mb, int) or memory_mb <= 0:
        raise SpecError('the flavor memory must be a positive number of MiB, '
                        'got %r' % (memory_mb,))
    if policy == 'none':
        given = [k for k, v in ((DRAM_MB, dram_mb),
                                (DRAM_PERCENT, dram_percent),
                                (DRAM_MAX_MB, dram_max_mb)) if v is not None]
        if given:
            raise SpecError('%s applies only to a static or on_demand %s, '
                            'not none' % (', '.join(given), POLICY))
        return None
    if (dram_mb is None) == (dram_percent is None):
        raise SpecError('a %s %s needs exactly one of %s and %s (got %s)'
                        % (policy, POLICY, DRAM_MB, DRAM_PERCENT,
                           'both' if dram_mb is not None else 'neither'))
    if dram_mb is not None:
        if not isinstance(dram_mb, int) or not 0 < dram_mb <= memory_mb:
            raise SpecError('%s must be an integer from 1 to the flavor '
                            'memory (%d MiB), got %r'
                            % (DRAM_MB, memory_mb, dram_mb))
        floor = dram_mb
    else:
        if not isinstance(dram_percent, int) \
                or not 0 < dram_percent <= 100:
            raise SpecError('%s must be an integer from 1 to 100, got %r'
                            % (DRAM_PERCENT, dram_percent))
        floor = floor_from_percent(memory_mb, dram_percent)
    if policy == 'static':
        if dram_max_mb is not None:
            raise SpecError('%s applies only to on_demand; a static guest '
                            'has exactly its floor' % DRAM_MAX_MB)
        return TierSpec(policy, floor, floor)
    ceiling = memory_mb if dram_max_mb is None else dram_max_mb
    if not isinstance(ceiling, int) or not floor <= ceiling <= memory_mb:
        raise SpecError('%s must be an integer from the floor (%d MiB) to '
                        'the flavor memory (%d MiB), got %r'
                        % (DRAM_MAX_MB, floor, memory_mb, dram_max_mb))
    return TierSpec(policy, floor, ceiling)


def flavor_properties(memory_mb, policy, dram_mb=None, dram_percent=None,
                      dram_max_mb=None):
    """The properties (an ordered list of (key, value)) a consistent
    flavor carries for this policy, Placement lines included."""
    spec = resolve(memory_mb, policy, dram_mb, dram_percent, dram_max_mb)
    props = [(POLICY, policy)]
    if spec is None:
        return props
    if dram_mb is not None:
        props.append((DRAM_MB, str(dram_mb)))
    else:
        props.append((DRAM_PERCENT, str(dram_percent)))
    if policy == 'on_demand' and dram_max_mb is not None:
        props.append((DRAM_MAX_MB, str(dram_max_mb)))
    props += [('resources:MEMORY_MB', str(spec.floor_mb)),
              ('resources:%s' % SLOW_RC, str(memory_mb - spec.floor_mb)),
              ('trait:%s' % TRAIT, 'required')]
    return props


#: Every key of the ``loki:`` namespace.
KEYS = (POLICY, DRAM_MB, DRAM_PERCENT, DRAM_MAX_MB)
NAMESPACE = 'loki'


def parse_whole_number(key, value):
    """``value`` of spec ``key`` as an int.  Only the ASCII digits 0-9 are
    a number here: Python's ``int()`` also takes a sign, surrounding
    blanks, ``_`` separators and the digits of other scripts, which an
    operator reading the flavor would not read as the same number."""
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise SpecError('%s must be a whole number written with the digits '
                        '0-9 only (no sign, blanks or separators), got %r'
                        % (key, value))
    return int(text)


def _int_spec(extra_specs, key):
    value = extra_specs.get(key)
    if value is None:
        return None
    return parse_whole_number(key, value)


def key_error(key):
    """Why ``key`` (of the ``loki`` namespace, in any case) is not read,
    and what to write instead; None for a valid key."""
    if key in KEYS:
        return None
    if key.lower() in KEYS:
        return ('%s is not read: extra spec keys are case sensitive; '
                'rename it to %s' % (key, key.lower()))
    return '%s is not a loki extra spec; valid keys: %s' % (
        key, ', '.join(KEYS))


def check_keys(extra_specs):
    """Refuse keys that look like ``loki:`` specs but would be ignored:
    unknown ``loki:`` keys and ``Loki:``/``LOKI:`` (any other case) keys.
    Raises ``SpecError`` naming the first such key (sorted)."""
    for key in sorted(extra_specs or {}):
        namespace, sep, _name = str(key).partition(':')
        if sep and namespace.lower() == NAMESPACE:
            error = key_error(str(key))
            if error:
                raise SpecError(error)


def from_extra_specs(memory_mb, extra_specs):
    """The ``TierSpec`` a flavor's extra specs ask for (None for policy
    ``none`` or no ``loki:`` policy at all), with every cross-key check
    of ``resolve``.  Raises ``SpecError`` naming the spec."""
    extra_specs = extra_specs or {}
    policy = extra_specs.get(POLICY)
    if policy is None:
        stray = [k for k in KEYS if k in extra_specs]
        if stray:
            raise SpecError('%s without %s: set %s to static or on_demand, '
                            'or remove %s' % (', '.join(stray), POLICY,
                                              POLICY, ', '.join(stray)))
        return None
    return resolve(memory_mb, str(policy).strip(),
                   _int_spec(extra_specs, DRAM_MB),
                   _int_spec(extra_specs, DRAM_PERCENT),
                   _int_spec(extra_specs, DRAM_MAX_MB))


def check_resources(memory_mb, extra_specs, spec):
    """Check the flavor's Placement split against ``spec`` (a tiered
    ``TierSpec``).

    Returns True when the flavor carries the split, False when it carries
    none of it (then Placement accounts the whole memory as MEMORY_MB, which
    is safe but wastes DRAM; the caller warns).  Raises ``SpecError`` when
    the split is partial or contradicts the floor."""
    fast_key = 'resources:MEMORY_MB'
    slow_key = 'resources:%s' % SLOW_RC
    want = {fast_key: spec.floor_mb, slow_key: memory_mb - spec.floor_mb}
    have = {k: extra_specs.get(k) for k in want}
    if all(v is None for v in have.values()):
        return False
    for key, expected in want.items():
        value = have[key]
        try:
            got = int(str(value).strip())
        except (TypeError, ValueError):
            got = None
        if got != expected:
            # Fault messages are cut at 255 characters: key and fix first.
            raise SpecError(
                '%s=%s contradicts loki floor %d MiB; valid: %s=%d, %s=%d'
                % (key, 'unset' if value is None else value, spec.floor_mb,
                   fast_key, want[fast_key], slow_key, want[slow_key]))
    return True
