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

"""oslo.service's concurrency backend for the agent's process.

oslo.messaging takes its timers from oslo.service, which loads its
eventlet backend unless a process has chosen one first.  The agent is
plain threads, so every process that runs the agent's RPC server (the
``loki-memtier-agent`` service, the demo) chooses the threading backend
before anything imports oslo.messaging.
"""

#: What provides the threading backend, for the error message.
REQUIREMENT = 'oslo.service[threading]>=4.2.0'


class BackendUnavailable(RuntimeError):
    """oslo.service cannot give this process its threading backend."""


def use_threading():
    """Select oslo.service's threading backend, unless this process has
    already selected one (then that one stays: a backend cannot change
    once it is loaded).  Returns the backend type in force, as a string.

    Raises BackendUnavailable, naming the requirement, when the installed
    oslo.service is older than 4.2 or lacks the ``threading`` extra.
    """
    try:
        from oslo_service import backend
        chosen = backend.get_backend_type()
        if chosen is None:
            backend.init_backend(backend.BackendType.THREADING)
            chosen = backend.get_backend_type()
    except (ImportError, AttributeError, ValueError) as exc:
        raise BackendUnavailable(
            "oslo.service's threading backend is not available (%s); "
            "install %s" % (exc, REQUIREMENT)) from exc
    return getattr(chosen, 'value', str(chosen))
