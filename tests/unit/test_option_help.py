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

"""Every option of the agent and the driver explains itself: full
sentences, the unit of a number, and the default as the sample shows it."""

import re

import pytest
from oslo_config import cfg

from loki_nova.conf import loki
from loki_nova.conf import memtier

OPTS = [('memtier', o) for o in memtier.memtier_opts] + \
    [('loki', o) for o in loki.loki_opts]

# What a number can be counted in; a number option's help names one.
UNITS = ('second', 'MiB', 'KiB', 'bytes', 'pages', 'heat', 'ratio', 'bits')


def _default_words(opt):
    """How the help may state the default of ``opt``."""
    if opt.sample_default is not None:
        return [str(opt.sample_default).strip('<>')]
    value = opt.default
    if value in ('', {}, [], None):
        return ['Empty', 'empty']
    if isinstance(value, bool):
        return ['true' if value else 'false']
    if isinstance(value, float) and value.is_integer():
        return ['%g' % value, repr(value)]
    if isinstance(value, list):
        return [','.join(value)]
    return [str(value)]


@pytest.mark.parametrize('group,opt', OPTS,
                         ids=['%s.%s' % (g, o.dest) for g, o in OPTS])
def test_help_is_sentences_with_unit_and_default(group, opt):
    text = ' '.join(opt.help.split())
    where = '[%s] %s' % (group, opt.dest)
    assert text[:1].isupper(), '%s: help starts mid-sentence' % where
    assert text.endswith('.'), '%s: help does not end a sentence' % where
    assert len(text.split()) >= 8, '%s: help too short: %r' % (where, text)
    # The sentence that states the default ("Default 1.0." keeps its
    # decimal point), and the default in it as a whole word: "Default 10"
    # does not state a default of 1.
    default = re.search(r'Default\b(?:[^.]|\.(?=\d))*\.'
                        r'|[Ee]mpty \(the default\)[^.]*', text)
    assert default, '%s: help does not state the default' % where
    stated = default.group(0)
    assert any(re.search(r'(?<![\w.])%s(?![\w]|\.\d)' % re.escape(w),
                         stated)
               for w in _default_words(opt)), (
        '%s: default %r not in %r' % (where, opt.default, stated))
    if isinstance(opt, (cfg.IntOpt, cfg.FloatOpt)):
        assert any(u.lower() in text.lower() for u in UNITS), (
            '%s: a number without a unit (one of %s)' % (where, UNITS))
