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

from loki_nova.conf import loki
from loki_nova.conf import memtier

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_config_generator_writes_the_memtier_sample(tmp_path):
    sample = tmp_path / 'memtier.conf.sample'
    generator = os.path.join(os.path.dirname(sys.executable),
                             'oslo-config-generator')
    done = subprocess.run(
        [generator, '--config-file',
         os.path.join(REPO, 'etc/loki-nova/memtier-config-generator.conf'),
         '--output-file', str(sample)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = sample.read_text()
    assert '[memtier]' in text
    for opt in memtier.memtier_opts:
        assert re.search(r'^#%s =( |$)' % opt.dest, text, re.M), opt.dest


def test_config_generator_writes_the_driver_sample(tmp_path):
    sample = tmp_path / 'nova-loki.conf.sample'
    generator = os.path.join(os.path.dirname(sys.executable),
                             'oslo-config-generator')
    done = subprocess.run(
        [generator, '--config-file',
         os.path.join(REPO, 'etc/loki-nova/driver-config-generator.conf'),
         '--output-file', str(sample)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = sample.read_text()
    assert '[loki]' in text
    for opt in loki.loki_opts:
        assert re.search(r'^#%s =( |$)' % opt.dest, text, re.M), opt.dest
