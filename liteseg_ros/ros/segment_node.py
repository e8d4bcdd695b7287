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
The ``segment_node`` ROS 2 lifecycle node and its ``main()``: camera images in, masks out.

The node class only wires the lifecycle transitions and parameter changes to the modules of
``liteseg_ros.ros.node`` (parameters, live, cameras, pipeline, worker, publishing,
diagnostics); docs/node.md describes the topics, parameters, threads and diagnostics.
"""

import signal
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from liteseg_ros.ros.node.cameras import (create_cameras, release_cameras, subscribe_cameras,
                                          unsubscribe_cameras)
from liteseg_ros.ros.node.diagnostics import (BatchCounters, camera_status, diagnostic_array,
                                              node_status)
from liteseg_ros.ros.node.grid import GroundGridOutput
from liteseg_ros.ros.node.live import (apply_live, check_changes, parameter_descriptor,
                                       read_only_reason)
from liteseg_ros.ros.node.parameters import (NEXT_CONFIGURE, PARAMETERS, READ_ONLY,
                                             validate_parameters)
from liteseg_ros.ros.node.pipeline import Pipeline
from liteseg_ros.ros.node.worker import Worker
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

NODE_NAME = 'segment_node'


class SegmentNode(LifecycleNode):
    """The segmentation lifecycle node (docs/node.md)."""

    def __init__(self, node_name=NODE_NAME, **kwargs):
        """Declare the parameters and, with ``autostart``, configure and activate."""
        super().__init__(node_name, **kwargs)
        self._startup_errors = self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._state = 'unconfigured'  # the lifecycle state, kept by the transitions below
        self._lock = threading.Lock()  # queues and counters: callbacks, worker, diagnostics
        self._wake = threading.Condition(self._lock)  # a camera queued a message
        self._gate = None  # the image subscriptions' InputGate (ros/node/cameras.py)
        self._settings = None
        self._pipeline = None
        self._cameras = []
        self._grid = None  # camera_info and the ground grid (ros/node/grid.py)
        self._worker = None
        self._batches = BatchCounters()
        self._backend_name = ''
        self._model_description = ''
        self._configure_error = ''
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics_timer = None
        period = self.get_parameter('diagnostics_period_s').value
        self._start_diagnostics(period if isinstance(period, (int, float)) and period > 0
                                else 1.0)
        autostart = self.get_parameter('autostart').value
        if autostart is True:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()
        elif autostart is not False:
            self.get_logger().error(f"parameter 'autostart': expected true or false, got "
                                    f'{autostart!r}; not starting by itself')

    # -- parameters (docs/node.md, "Parameters") -------------------------------------------

    def _declare_parameters(self):
        """Declare every parameter with its descriptor; return {name: error} of bad overrides."""
        errors = {}
        for name, (default, _) in PARAMETERS.items():
            descriptor = parameter_descriptor(name)
            try:
                self.declare_parameter(name, default, descriptor)
            except InvalidParameterValueException as exc:  # out of range in a params file
                errors[name] = f"parameter '{name}': {exc}"
                self.declare_parameter(name, default, descriptor, ignore_override=True)
        return errors

    def set_parameters_atomically(self, parameter_list):
        """Refuse read-only parameters with how to set them; otherwise set as usual."""
        for parameter in parameter_list:
            if parameter.name in READ_ONLY:
                return SetParametersResult(successful=False,
                                           reason=read_only_reason(parameter.name))
        return super().set_parameters_atomically(parameter_list)

    def _on_set_parameters(self, parameters):
        """Check every change at once; apply the live ones from the next frame."""
        pipeline = self._pipeline
        values, reason = check_changes(
            parameters, pipeline.renderer.class_names if pipeline is not None else None)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        apply_live(values, self._settings, pipeline.renderer if pipeline is not None else None)
        for name in values:
            self._startup_errors.pop(name, None)
        period = values.get('diagnostics_period_s')
        if period is not None and period != self._diagnostics_period:
            self._start_diagnostics(period)
        later = [name for name in values if name in NEXT_CONFIGURE]
        if later and self._state != 'unconfigured':
            self.get_logger().info(f"{', '.join(later)}: applies at the next configure")
        return SetParametersResult(successful=True)

    # -- lifecycle -------------------------------------------------------------------------

    def on_configure(self, state):
        """Validate the parameters, load the model and create the publishers."""
        try:
            self._configure()
        except Exception as exc:  # any failure leaves the node unconfigured and alive
            self._release()
            self._configure_error = str(exc)
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ''
        self._state = 'inactive'
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        """Subscribe to the cameras and start the worker."""
        self._gate = subscribe_cameras(self, self._cameras, self._settings, self._wake,
                                       self.get_logger())
        self._worker = Worker(self._cameras, self._settings, self._pipeline, self._batches,
                              self._wake, self.get_logger(), self.get_clock(), self._gate)
        self._worker.grid = self._grid
        self._worker.start()
        self.get_logger().info('active: segmenting ' + ', '.join(
            c.topic for c in self._cameras))
        result = super().on_activate(state)
        self._state = 'active'
        return result

    def on_deactivate(self, state):
        """Stop the worker and unsubscribe."""
        self._stop_worker()
        unsubscribe_cameras(self, self._cameras, self._gate)
        self._gate = None
        self._state = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        """Drop the publishers and the model."""
        self._release()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        """Stop everything."""
        self._stop_worker()
        self._release()
        self._state = 'finalized'
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state):
        """Release everything and go back to unconfigured."""
        self._stop_worker()
        self._release()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def stop(self):
        """Stop the worker thread (used at shutdown, also after the context went down)."""
        self._stop_worker()

    def _configure(self):
        if self._startup_errors:
            raise ValueError('; '.join(self._startup_errors.values()))
        names = list(PARAMETERS)
        values = dict(zip(names, (p.value for p in self.get_parameters(names))))
        settings = validate_parameters(values)
        log = self.get_logger()
        pipeline = Pipeline.load(settings, self.get_fully_qualified_name(), log)
        self._pipeline = pipeline
        self._backend_name = pipeline.backend_name
        self._model_description = pipeline.description
        self._settings = settings
        self._cameras = create_cameras(self, settings)
        self._grid = GroundGridOutput(self, settings, pipeline.renderer, log)
        if self._diagnostics_period != settings.diagnostics_period_s:
            self._start_diagnostics(settings.diagnostics_period_s)
        log.info(f'configured: {pipeline.description}; drivable classes '
                 f'{pipeline.drivable_names()} ({settings.drivable_mode}); cameras '
                 + ', '.join(f'{c.name} <- {c.topic}' for c in self._cameras))

    def _stop_worker(self):
        if self._worker is not None:
            self._worker.stop()
        self._worker = None

    def _release(self):
        if self._gate is not None:
            unsubscribe_cameras(self, self._cameras, self._gate)
            self._gate = None
        release_cameras(self, self._cameras)
        self._cameras = []
        if self._grid is not None:
            self._grid.release(self)
            self._grid = None
        self._pipeline = None
        self._settings = None

    # -- diagnostics -----------------------------------------------------------------------

    def _start_diagnostics(self, period):
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
        self._diagnostics_period = period
        self._diagnostics_timer = self.create_timer(
            period, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _publish_diagnostics(self):
        try:
            stamp = self.get_clock().now().to_msg()
            statuses = [self._node_status()] + [self._camera_status(c)
                                                for c in list(self._cameras)]
            grid = self._grid
            grid_status = grid.status() if grid is not None else None
            if grid_status is not None:  # WARNs naming cameras left out of the grid
                statuses.append(grid_status)
            self._diagnostics.publish(diagnostic_array(
                statuses, stamp, self.get_name(), self.get_fully_qualified_name()))
        except Exception as exc:  # diagnostics must never take the node down
            self.get_logger().error(f'cannot publish diagnostics: {exc!r}',
                                    throttle_duration_sec=10.0)

    def _node_status(self):
        state = self._state
        with self._lock:
            batches = self._batches.copy()
        pipeline = self._pipeline
        return node_status(state, self._model_description, batches, self._configure_error,
                           pipeline.confidence_status() if pipeline is not None else None)

    def _camera_status(self, camera):
        now = time.monotonic()
        with self._lock:  # counters since the last report, and times, in one snapshot
            counters, times = camera.counters.copy(), camera.times.copy()
            before, then = camera.reported
            camera.reported = (counters, now)
        settings = self._settings
        return camera_status(camera.name, camera.topic, counters, before, now - then, times,
                             settings.min_rate_hz if settings is not None else 0.0,
                             self._backend_name, self._model_description)


def keep_large_buffers_in_heap():
    """
    Stop glibc from returning every freed large buffer to the kernel (Linux/glibc only).

    Each received image (6 MB at 2048x1024 rgb8) passes through several buffers of that size.
    By default glibc serves such sizes with fresh mmap()s (or trims the heap after free), so
    every frame pays page faults on each of them: ~12 ms of CPU per 2048x1024 frame received
    at 30 Hz here, against ~3.4 ms with these settings (keep allocations up to 32 MiB in the
    heap, trim only above 1 GiB free). Returns True when applied.
    """
    if not sys.platform.startswith('linux'):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL('libc.so.6')
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)
                    and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc
        return False


class InterruptOutsideRclpy:
    """
    The node's Python SIGINT handler: KeyboardInterrupt, except inside rclpy's own code.

    ``rclpy.init`` installs rclpy's handler over this one and chains to it: by the time this
    runs, rclpy has shut the context down, which ends a spinning executor and fails any later
    rclpy call. A KeyboardInterrupt raised inside rclpy could leave one of its objects
    half-built (a Task whose ``__del__`` then printed a traceback at exit), so there the stop is
    only noted (``requested``). Elsewhere (our code, a weights download, a model load) it
    interrupts as usual. Once ``stopping``, a second SIGINT is noted too: the stop is under way.
    """

    def __init__(self):
        """Nothing requested yet."""
        self.requested = False
        self.stopping = False

    def __call__(self, signum, frame):
        """Raise KeyboardInterrupt unless the interrupted frame is rclpy's, or we are stopping."""
        self.requested = True
        if self.stopping or _innermost_package(frame) == 'rclpy':
            return
        raise KeyboardInterrupt


def _innermost_package(frame, packages=('rclpy', 'liteseg_ros')):
    """Return which of ``packages`` owns the innermost of the stack's frames they own, or None."""
    while frame is not None:
        top = frame.f_globals.get('__name__', '').partition('.')[0]
        if top in packages:
            return top
        frame = frame.f_back
    return None


def main(args=None):
    """Run the node until SIGINT/SIGTERM; return the exit code."""
    keep_large_buffers_in_heap()
    interrupts = InterruptOutsideRclpy()
    signal.signal(signal.SIGINT, interrupts)  # before rclpy.init, whose handler chains to it
    node = None
    try:
        rclpy.init(args=args)
        if interrupts.requested:  # SIGINT before rclpy's own handler was installed
            return 0
        node = SegmentNode()
        if not rclpy.ok() or interrupts.requested:
            # SIGINT while the node was being built, and handled inside it (a failed configure
            # transition): the context is gone, and an executor made now would fail half-built.
            return 0
        # Services, parameters and the diagnostics timer; images go to the worker thread.
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # SIGINT while the node is being built: rclpy's handler shut the context down under
        # it (RCLError "context is invalid"); that is a stop, not a failure.
        if rclpy.ok():
            raise
    finally:
        interrupts.stopping = True
        if node is not None:
            node.stop()
            try:
                node.destroy_node()
            except Exception:  # the context may already be gone after a signal
                pass
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
