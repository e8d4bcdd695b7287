# Copyright 2026 The liteseg_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
``liteseg bag-eval --ray``: the bags of a fleet on Ray actors that keep the model.

Ray is optional (``requirements-fleet.txt``) and imported only here, only for ``--ray``.
Each :class:`BagWorker` actor loads the model once and evaluates one bag per call
(``fleet_bag.evaluate_one``). Actors are created with ``max_restarts`` and ``max_task_retries``:
a worker process that dies mid-bag (SIGKILL, OOM, lost node) is restarted, reloads the model,
and Ray runs that bag's call again, which starts the bag's folder afresh; only the record of
the attempt that finished counts (docs/bag_eval.md, "Fleet evaluation").
"""

import ctypes
import dataclasses
import faulthandler
import math
import os
from pathlib import Path
import sys
import time
import uuid

from liteseg_ros.bags.fleet_bag import evaluate_one, FleetError, FleetRequest

#: Restarts of a dead actor and retries of the bag it was on (a bag that kills its worker
#: every time fails after these).
MAX_RESTARTS = 3
MAX_TASK_RETRIES = 3
_POLL_S = 0.5


class _SignalStack(ctypes.Structure):  # Linux's stack_t
    _fields_ = [('ss_sp', ctypes.c_void_p), ('ss_flags', ctypes.c_int),
                ('ss_size', ctypes.c_size_t)]


#: The alternate signal stack ``restore_signal_handling`` gives back: alive with the process.
SIGNAL_STACK = ctypes.create_string_buffer(256 << 10)


def signal_stack():
    """Return the calling thread's alternate signal stack address (Linux), else None."""
    if not sys.platform.startswith('linux'):
        return None
    current = _SignalStack()
    ctypes.CDLL(None).sigaltstack(None, ctypes.byref(current))
    return current.ss_sp


def restore_signal_handling(faulthandler_file=None):
    """
    Undo what ``ray.init`` leaves in the calling (main) thread after ``ray.shutdown``.

    Ray points the thread's alternate signal stack at a 64 KiB mapping of its own and replaces
    faulthandler's SIGSEGV handler; shutdown leaves the stack pointing there and the handler at
    SIG_DFL. Once that memory is gone, the next signal delivered on the alternate stack (the
    SIGCHLD of a finished subprocess) cannot be delivered and the kernel kills the process with
    SIGSEGV, without a word. This gives the thread ``SIGNAL_STACK`` and, if faulthandler was
    on, its handler again, writing to ``faulthandler_file`` (default: sys.stderr). Linux only.
    """
    if not sys.platform.startswith('linux'):
        return
    if signal_stack() != ctypes.addressof(SIGNAL_STACK):
        ours = _SignalStack(ctypes.addressof(SIGNAL_STACK), 0, ctypes.sizeof(SIGNAL_STACK))
        ctypes.CDLL(None).sigaltstack(ctypes.byref(ours), None)
    if faulthandler.is_enabled():
        faulthandler.disable()  # enable() alone keeps the stale state
        try:
            faulthandler.enable(file=faulthandler_file or sys.stderr)
        except (AttributeError, OSError, ValueError):  # a stderr without a file descriptor
            pass


def import_ray():
    """Return the ray module, or raise FleetError naming how to install it."""
    try:
        import ray
    except ImportError:
        raise FleetError('--ray needs the ray package, which is not installed: '
                         'pip install -r requirements-fleet.txt') from None
    return ray


class BagWorker:
    """A Ray actor: the model loaded once, one bag per :meth:`evaluate` call."""

    def __init__(self, request, make_segmenter=None, counter_name=None):
        """Load the model (again after a restart)."""
        self.request = request
        self.segmenter = (make_segmenter or FleetRequest.load_segmenter)(request)
        # The progress counter by name: an actor handle among the constructor arguments
        # would live in the object store, which a restart cannot rely on.
        self.counter_name = counter_name
        self.counter = None

    def evaluate(self, bag, folder):
        """Evaluate ``bag`` into ``folder``: ``fleet_bag.evaluate_one``'s (record, arrays)."""
        name = Path(folder).name

        def on_frames(count, total):
            if self.counter is None and self.counter_name is not None:
                import ray

                self.counter = ray.get_actor(self.counter_name)
            if self.counter is not None:
                self.counter.note.remote(name, count)

        return evaluate_one(self.segmenter, bag, folder, self.request, on_frames)

    def pid(self):
        """Return the worker process id."""
        return os.getpid()


class FrameCounter:
    """A Ray actor holding the frames read so far by each running bag (for the progress bar)."""

    def __init__(self):
        """Start empty."""
        self.counts = {}

    def note(self, name, count):
        """Note that bag ``name`` has read ``count`` frames (a retry starts again at 0)."""
        self.counts[name] = count

    def get(self):
        """Return {bag name: frames read}."""
        return dict(self.counts)


def connect(ray, address):
    """Start or join Ray; return True when this call started the connection."""
    if ray.is_initialized():
        return False  # the caller's own Ray connection (a notebook, a test): use it, keep it
    if address == 'local':
        # A local instance sized to this machine; no dashboard (docs/bag_eval.md).
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    else:
        try:
            ray.init(address=address)
        except ConnectionError as exc:
            raise FleetError(f'--ray {address}: cannot join a Ray cluster there ({exc}); start '
                             'one with `ray start --head`, use --ray local, or, for a cluster '
                             'with token authentication, export RAY_AUTH_MODE=token') from None
    return True


def worker_shape(ray, request, workers):
    """
    Return (workers, request with threads set, Ray actor options).

    GPU cluster (and ``--device`` not cpu): one actor per GPU by default; more actors share
    the GPUs evenly, each asking for 1/ceil(workers/GPUs) of one (Ray places a fraction on a
    single GPU: 3 actors asking 2/3 each would leave one unplaced on 2 GPUs). CPU:
    ``--threads`` (default 1) per actor, as many actors as the cluster has CPUs for.
    """
    resources = ray.cluster_resources()
    cpus = max(1, int(resources.get('CPU', 1)))
    gpus = int(resources.get('GPU', 0))
    if request.device.startswith('cuda') and not gpus:
        raise FleetError(f'--device {request.device}: the Ray cluster has no GPU')
    if gpus and request.device != 'cpu':
        workers = workers or gpus
        options = {'num_gpus': 1 / math.ceil(workers / gpus),
                   'num_cpus': max(1, request.threads)}
        return workers, request, options
    threads = request.threads or 1
    workers = workers or max(1, cpus // threads)
    return workers, dataclasses.replace(request, threads=threads), {'num_cpus': threads}


def run_on_ray(address, jobs, request, workers, on_record, progress, make_segmenter=None,
               log=print):
    """
    Evaluate ``jobs`` on Ray; call ``on_record(job, record, arrays)`` as each bag ends.

    :returns: how it ran (address, workers, threads, cluster resources).
    """
    ray = import_ray()
    started = connect(ray, address)
    actors, counter = [], None
    try:
        workers, request, options = worker_shape(ray, request, workers)
        workers = max(1, min(workers, len(jobs))) if jobs else 1
        resources = {k: v for k, v in ray.cluster_resources().items() if k in ('CPU', 'GPU')}
        log(f'bag-eval: {len(jobs)} bags on Ray ({resources}): {workers} workers, '
            f"{request.threads or 'default'} threads each")
        counter_name = f'liteseg-fleet-progress-{uuid.uuid4().hex}'
        counter = ray.remote(num_cpus=0)(FrameCounter).options(name=counter_name).remote()
        actor_class = ray.remote(max_restarts=MAX_RESTARTS,
                                 max_task_retries=MAX_TASK_RETRIES)(BagWorker)

        def new_actor():
            return actor_class.options(**options).remote(request, make_segmenter, counter_name)

        actors = [new_actor() for _ in range(workers)]
        _schedule(ray, jobs, actors, new_actor, counter, on_record, progress)
    finally:
        for actor in actors + ([counter] if counter is not None else []):
            ray.kill(actor)
        if started:
            ray.shutdown()
            restore_signal_handling()
    return {'mode': 'ray', 'address': address, 'workers': workers,
            'threads': request.threads, 'gpus_per_worker': options.get('num_gpus', 0),
            'cluster': resources}


def _schedule(ray, jobs, actors, new_actor, counter, on_record, progress):
    """Give each idle actor the next bag until all are done; replace actors that stay dead."""
    queue = list(jobs)
    idle = list(actors)
    running = {}  # object ref -> (actor, job)
    polled = 0.0
    while queue or running:
        while idle and queue:
            actor, job = idle.pop(), queue.pop(0)
            running[actor.evaluate.remote(str(job.bag), str(job.folder))] = (actor, job)
        ready, _ = ray.wait(list(running), num_returns=1, timeout=_POLL_S)
        if time.monotonic() - polled > _POLL_S:
            polled = time.monotonic()
            for name, count in ray.get(counter.get.remote()).items():
                if any(job.folder.name == name for _, job in running.values()):
                    progress.frames(name, count)
        for ref in ready:
            actor, job = running.pop(ref)
            try:
                record, arrays = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # dead after all its restarts
                record, arrays = _failed(job, f'the worker died: {exc}'), {}
                ray.kill(actor)
                actors.remove(actor)
                actor = new_actor()
                actors.append(actor)
            except ray.exceptions.RayError as exc:
                record, arrays = _failed(job, f'{type(exc).__name__}: {exc}'), {}
            idle.append(actor)
            on_record(job, record, arrays)


def _failed(job, error):
    """Return the record of a bag whose worker failed (no folder result)."""
    return {'bag': str(job.bag), 'name': job.folder.name, 'status': 'failed',
            'error': error.splitlines()[0], 'frames': 0, 'labelled_frames': 0,
            'image_messages': 0, 'pipeline_s': 0.0, 'wall_s': 0.0, 'fps': 0.0,
            'summary': None, 'worst': [], 'matrix_topics': []}


__all__ = ['BagWorker', 'FrameCounter', 'MAX_RESTARTS', 'MAX_TASK_RETRIES', 'connect',
           'import_ray', 'run_on_ray', 'worker_shape']
