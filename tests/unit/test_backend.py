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

"""oslo.service's backend for the agent's process (memtier/backend.py).

oslo.service picks its backend once per process, so each case runs in a
fresh interpreter.
"""

import subprocess
import sys
import textwrap


def _python(code):
    res = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout
    return res.stdout.strip().splitlines()[-1]


def test_the_threading_backend_is_chosen_before_oslo_messaging_loads():
    out = _python('''
        from loki_nova.memtier import backend
        chosen = backend.use_threading()
        import oslo_messaging.server  # takes oslo.service's timers
        from oslo_service import backend as oslo_backend
        print(chosen, oslo_backend.get_backend_type().value)
    ''')
    assert out == 'threading threading'


def test_a_backend_already_chosen_in_the_process_stays():
    out = _python('''
        from oslo_service import backend as oslo_backend
        oslo_backend.init_backend(oslo_backend.BackendType.EVENTLET)
        from loki_nova.memtier import backend
        print(backend.use_threading())
    ''')
    assert out == 'eventlet'


def test_an_oslo_service_without_the_threading_extra_is_named():
    # Stand-in for an install without cotyledon (the [threading] extra):
    # oslo.service's init_backend then fails as it does there.
    out = _python('''
        from oslo_service import backend as oslo_backend
        def refuse(kind):
            raise ValueError("Unknown backend: 'threading'")
        oslo_backend.init_backend = refuse
        from loki_nova.memtier import backend
        try:
            backend.use_threading()
        except backend.BackendUnavailable as exc:
            print('refused:', exc)
    ''')
    assert out.startswith('refused: ')
    assert "Unknown backend: 'threading'" in out
    assert 'install oslo.service[threading]>=4.2.0' in out
