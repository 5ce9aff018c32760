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

"""Nova loads ``compute_driver = loki.LokiDriver`` from the installed
package, in both of its concurrency modes, and the wheel ships nothing of
Nova's but the shim package ``nova.virt.loki``.

Each mode runs in a fresh interpreter, since Nova picks the mode once per
process (and in threading mode makes ``import eventlet`` fail).
"""

import json
import os
import subprocess
import sys
import tempfile
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

LOAD = r'''
import json, sys
from nova import monkey_patch
monkey_patch.patch()
import nova.conf
from nova.virt import driver, virtapi
nova.conf.CONF([], project='nova')
loaded = driver.load_compute_driver(virtapi.VirtAPI(), 'loki.LokiDriver')
import nova.virt.loki
from loki_nova.virt import driver as loki_driver
print(json.dumps({
    'is_loki': type(loaded) is loki_driver.LokiDriver,
    'class': '%s.%s' % (type(loaded).__module__, type(loaded).__name__),
    'shim': nova.virt.loki.LokiDriver is loki_driver.LokiDriver,
    'eventlet_imported': 'eventlet' in sys.modules,
    'patched': monkey_patch.is_patched(),
}))
'''


@pytest.mark.parametrize('disable_eventlet,patched', [
    ('true', False), ('false', True)], ids=['threading', 'eventlet'])
def test_load_compute_driver(disable_eventlet, patched, tmp_path):
    env = dict(os.environ, OS_NOVA_DISABLE_EVENTLET_PATCHING=disable_eventlet)
    # Run outside the checkout so that only the installed package counts.
    out = subprocess.run([sys.executable, '-c', LOAD], cwd=tmp_path,
                         env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['is_loki'], result
    assert result['class'] == 'loki_nova.virt.driver.LokiDriver'
    assert result['shim']
    assert result['patched'] is patched
    if not patched:
        # Threading mode poisons eventlet: had anything in the driver's
        # import chain imported it, loading would have failed above.
        assert result['eventlet_imported'] is False


def test_wheel_ships_only_the_shim_of_nova():
    with tempfile.TemporaryDirectory() as out:
        build = subprocess.run(
            [sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
             '--no-build-isolation', '-w', out, REPO],
            capture_output=True, text=True, timeout=600)
        assert build.returncode == 0, build.stderr[-3000:]
        (wheel,) = [f for f in os.listdir(out) if f.endswith('.whl')]
        with zipfile.ZipFile(os.path.join(out, wheel)) as zf:
            names = zf.namelist()
            entry_points = zf.read(next(
                n for n in names if n.endswith('entry_points.txt'))).decode()
    assert [n for n in names if n.startswith('nova/')] == [
        'nova/virt/loki/__init__.py']
    assert any(n.startswith('loki_nova/memtier/classifier/_core')
               and n.endswith('.so') for n in names)
    assert '[nova.api.extra_spec_validators]\nloki = ' \
        'loki_nova.virt.validators' in entry_points
    assert 'loki_nova.driver = loki_nova.conf.opts:list_loki_opts' \
        in entry_points
