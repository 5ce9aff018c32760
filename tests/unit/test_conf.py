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

"""Options: registration, defaults, and the sample config generator."""

from oslo_config import cfg
import pytest

from loki_nova.conf import loki as loki_conf
from loki_nova.conf import memtier
from loki_nova.memtier import classifier


def test_options_register_in_the_memtier_group():
    conf = cfg.ConfigOpts()
    memtier.register_opts(conf)
    conf([], project='loki-nova')
    assert conf.memtier.interval == 5.0
    assert conf.memtier.chunk_size_kb == 2048
    # Unset: the agent takes the default for its tracker (test_agent).
    assert conf.memtier.hysteresis is None
    assert classifier.ClassifierParams().hysteresis == 256


def test_every_option_has_full_sentence_help():
    for opt in memtier.memtier_opts:
        assert opt.help and opt.help.rstrip().endswith('.'), opt.name
        assert len(opt.help.split()) >= 8, opt.name


@pytest.mark.parametrize('value', ['1024', 'big'])
def test_malformed_values_are_rejected_naming_the_option(tmp_path, value):
    path = tmp_path / 'memtier.conf'
    path.write_text('[memtier]\nchunk_size_kb = %s\n' % value)
    conf = cfg.ConfigOpts()
    memtier.register_opts(conf)
    conf(['--config-file', str(path)], project='loki-nova')
    with pytest.raises(cfg.ConfigFileValueError, match='chunk_size_kb'):
        conf.memtier.chunk_size_kb


@pytest.mark.parametrize('name', ['interval', 'usage_interval'])
@pytest.mark.parametrize('value', ['nan', 'NaN', 'inf', '-inf', '1e999'])
def test_non_finite_seconds_are_rejected_naming_the_option(tmp_path, name,
                                                           value):
    # float() takes all of these, and nan passes any minimum
    path = tmp_path / 'memtier.conf'
    path.write_text('[memtier]\n%s = %s\n' % (name, value))
    conf = cfg.ConfigOpts()
    memtier.register_opts(conf)
    conf(['--config-file', str(path)], project='loki-nova')
    with pytest.raises(cfg.ConfigFileValueError) as err:
        getattr(conf.memtier, name)
    text = str(err.value)
    assert 'option %s ' % name in text and '\n' not in text
    assert 'must be a finite number' in text or 'greater than' in text


def test_every_float_option_refuses_non_finite_values():
    floats = [o for o in memtier.memtier_opts + loki_conf.loki_opts
              if isinstance(o, cfg.FloatOpt)]
    assert {o.dest for o in floats} >= {'interval', 'usage_interval',
                                        'slow_memory_allocation_ratio'}
    for opt in floats:
        assert isinstance(opt.type, memtier.FiniteFloat), opt.dest
        with pytest.raises(ValueError, match='must be a finite number'):
            opt.type('nan')
    # the bounds are kept, and said
    interval = {o.dest: o for o in floats}['interval']
    with pytest.raises(ValueError, match=r'finite number at least 0\.5, '
                                         r'got inf'):
        interval.type('inf')
    assert interval.type('0.5') == 0.5
