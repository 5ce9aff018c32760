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

"""``oslo-config-generator`` writes the agent's and the driver's sample
configurations."""

import os
import re
import subprocess
import sys

import pytest
from oslo_config import cfg

from loki_nova.conf import loki
from loki_nova.conf import memtier

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.mark.parametrize('generator_conf,group,opts', [
    ('memtier-config-generator.conf', 'memtier', memtier.memtier_opts),
    ('driver-config-generator.conf', 'loki', loki.loki_opts),
], ids=['agent', 'driver'])
def test_config_generator_writes_the_sample(tmp_path, generator_conf, group,
                                            opts):
    sample = tmp_path / 'sample.conf'
    generator = os.path.join(os.path.dirname(sys.executable),
                             'oslo-config-generator')
    done = subprocess.run(
        [generator, '--config-file',
         os.path.join(REPO, 'etc/loki-nova', generator_conf),
         '--output-file', str(sample)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = sample.read_text()
    assert '[%s]' % group in text
    for opt in opts:
        assert re.search(r'^#%s =( |$)' % opt.dest, text, re.M), opt.dest


def test_nova_conf_snippet_names_only_real_options(tmp_path):
    """``etc/nova/nova.conf.d-loki.conf``, its commented examples switched
    on, loads with the driver's options, and every ``[loki]`` line names
    one of them with a value it accepts."""
    snippet = os.path.join(REPO, 'etc/nova/nova.conf.d-loki.conf')
    text = open(snippet).read()
    assert re.search(r'^compute_driver = loki\.LokiDriver$', text, re.M)
    enabled = tmp_path / 'loki.conf'
    enabled.write_text(re.sub(r'^#(\w+ = )', r'\1', text, flags=re.M))
    named = re.findall(r'^(\w+) = ', text.split('[loki]', 1)[1].replace(
        '#', ''), re.M)
    known = {o.dest for o in loki.loki_opts}
    assert named and set(named) <= known, set(named) - known
    conf = cfg.ConfigOpts()
    loki.register_opts(conf)
    conf([], default_config_files=[str(enabled)])
    for name in named:
        getattr(conf.loki, name)   # raises if the value does not parse
    assert conf.loki.node_tiers == {'0': '0', '1': '0', '2': '1'}
