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
Fleet evaluation on one machine: bags per minute with Ray, its scaling and its overhead.

Writes ``--bags`` generated drives (``--frames`` rgb8 street scenes each at ``--size``, with a
mono8 label topic) and evaluates all of them, interleaved ``--repeats`` times, as:

- ``in-process``: ``bags.fleet.run_fleet`` without Ray (one model, bags one after another);
- ``ray x1``: on a local Ray instance, 1 worker (actor) of 1 thread;
- ``ray x2``: 2 workers of 1 thread each.

Every run includes loading the model (once per worker) and writes what ``liteseg bag-eval``
writes (per-bag folders with the output bag, the fleet summary); Ray itself is started once
before the runs (``ray.init``, timed separately), as a cluster runs before a job joins it.
Ray runs its workers at niceness 15 by default; on a machine shared with other jobs that
alone slows them against the in-process loop (niceness 0), so ``--ray-niceness`` (default 0,
``RAY_worker_niceness``) sets it: 0 compares like with like, 15 measures Ray's default.
Prints the min and median wall time, bags/min, the scaling ratio ray x2 / ray x1 and the
overhead ray x1 / in-process - 1, with the CPU and the load average before each round.
FPS/worker is each worker's own rate (frames / seconds spent reading, decoding and
segmenting): when it halves with two workers, the CPU, not Ray, is what is shared.

Usage::

    python benchmarks/fleet_scaling.py [--bags 8] [--frames 30] [--size 256x512]
        [--repeats 3] [--ray-niceness 0] [--model MODEL] [--json OUT]
"""

import argparse
import json
import os
from pathlib import Path
import shutil
import statistics
import sys
import tempfile
import time

from bench_models import default_model
from liteseg_ros.bags.fleet import run_fleet
from liteseg_ros.bags.fleet_bag import FleetRequest
from liteseg_ros.bags.rosbag import BagWriter, header, image_message
from liteseg_ros.inference.bench import cpu_info, machine_description, widest_avx
from liteseg_ros.sample_images import make_street_scene
import numpy as np

IMAGE_TOPIC = '/cam/image_raw'
LABEL_TOPIC = '/cam/labels'
CONFIGS = (('in-process', None, 1), ('ray x1', 'local', 1), ('ray x2', 'local', 2))


def write_drives(folder, count, frames, size):
    """Write ``count`` drives of ``frames`` frames; return their paths."""
    height, width = size
    label = np.full((height, width), 255, np.uint8)
    label[:height // 3] = 10  # sky
    label[2 * height // 3:] = 0  # road
    bags = []
    for b in range(count):
        path = Path(folder) / f'drive{b}'
        with BagWriter(path, 'mcap') as writer:
            for i in range(frames):
                stamp = (100 + b) * 10**9 + i * 10**8
                msg_header = header(stamp // 10**9, stamp % 10**9, 'cam')
                rgb = make_street_scene(height, width, seed=100 * b + i)
                writer.write(IMAGE_TOPIC, stamp, image_message(rgb, 'rgb8', msg_header))
                writer.write(LABEL_TOPIC, stamp, image_message(label, 'mono8', msg_header))
        bags.append(path)
    return bags


def load_average():
    """Return the 1-minute load average (other jobs share the machine)."""
    return os.getloadavg()[0]


def run_once(name, address, workers, bags, request, out):
    """Evaluate the bags once; return (wall seconds, frames, per-worker pipeline FPS)."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = run_fleet(bags, out, request, ray_address=address, workers=workers,
                        progress=False, log=lambda text: None)
    wall = time.perf_counter() - start
    if summary['bags']['ok'] != len(bags):
        raise RuntimeError(f'{name}: {summary["failed_bags"]}')
    return wall, summary['frames'], summary['fps']


def parse_args(argv):
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[1])
    parser.add_argument('--bags', type=int, default=8)
    parser.add_argument('--frames', type=int, default=30)
    parser.add_argument('--size', default='256x512', help='frame HEIGHTxWIDTH')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--ray-niceness', type=int, default=0)
    parser.add_argument('--model', type=Path, default=None)
    parser.add_argument('--json', type=Path, default=None)
    return parser.parse_args(argv)


def main(argv=None):
    """Run the benchmark; print and optionally write the report."""
    args = parse_args(argv)
    os.environ['RAY_worker_niceness'] = str(args.ray_niceness)  # read by ray.init below
    import ray

    size = tuple(int(v) for v in args.size.split('x'))
    scratch = Path(tempfile.mkdtemp(prefix='fleet_scaling_'))
    try:
        model = args.model or default_model(scratch, input_size=[128, 256], dynamic_batch=True)
        bags = write_drives(scratch / 'bags', args.bags, args.frames, size)
        request = FleetRequest([IMAGE_TOPIC], [LABEL_TOPIC], model=str(model), threads=1)
        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - start
        walls = {name: [] for name, _, _ in CONFIGS}
        fps = {name: [] for name, _, _ in CONFIGS}
        loads = []
        try:
            for repeat in range(args.repeats):
                loads.append(load_average())
                # Rotate the order so that a load change hits every configuration alike.
                order = CONFIGS[repeat % 3:] + CONFIGS[:repeat % 3]
                for name, address, workers in order:
                    wall, frames, worker_fps = run_once(name, address, workers, bags,
                                                        request, scratch / 'out')
                    walls[name].append(wall)
                    fps[name].append(worker_fps)
                    print(f'round {repeat + 1}: {name:<11} {wall:6.2f} s '
                          f'({60 * len(bags) / wall:.1f} bags/min)', flush=True)
            loads.append(load_average())
        finally:
            ray.shutdown()
        report = summarise(walls, fps, len(bags), frames, loads, ray_init_s, args, size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + '\n')
    return 0


def summarise(walls, fps, bags, frames, loads, ray_init_s, args, size):
    """Return the report dict of the measured wall times."""
    rows = {}
    for name, values in walls.items():
        rows[name] = {'min_s': min(values), 'median_s': statistics.median(values),
                      'worker_fps_median': statistics.median(fps[name]),
                      'bags_per_min_best': 60 * bags / min(values),
                      'bags_per_min_median': 60 * bags / statistics.median(values),
                      'runs_s': values}
    ratio = {kind: rows['ray x1'][f'{kind}_s'] / rows['ray x2'][f'{kind}_s']
             for kind in ('min', 'median')}
    overhead = {kind: rows['ray x1'][f'{kind}_s'] / rows['in-process'][f'{kind}_s'] - 1
                for kind in ('min', 'median')}
    return {'cpu': machine_description(), 'isa': widest_avx(cpu_info()[2]),
            'load_average_1min': loads,
            'bags': bags, 'frames_per_bag': frames // bags, 'frame_size': list(size),
            'repeats': args.repeats, 'ray_niceness': args.ray_niceness,
            'ray_init_s': ray_init_s, 'configs': rows,
            'scaling_x2_over_x1': ratio, 'ray_overhead_x1': overhead}


def format_report(report):
    """Return the report as text."""
    lines = [f"CPU: {report['cpu']} ({report['isa']}); load average (1 min) before each "
             f"round and after: {', '.join(f'{v:.2f}' for v in report['load_average_1min'])}",
             f"{report['bags']} bags x {report['frames_per_bag']} frames "
             f"{report['frame_size'][0]}x{report['frame_size'][1]}, {report['repeats']} "
             f"interleaved rounds; ray.init {report['ray_init_s']:.1f} s (once), Ray "
             f"workers at niceness {report['ray_niceness']}",
             f"{'':<12}{'min s':>8}{'median s':>10}{'bags/min':>10}{'(median)':>10}"
             f"{'FPS/worker':>12}"]
    for name, row in report['configs'].items():
        lines.append(f"{name:<12}{row['min_s']:>8.2f}{row['median_s']:>10.2f}"
                     f"{row['bags_per_min_best']:>10.1f}{row['bags_per_min_median']:>10.1f}"
                     f"{row['worker_fps_median']:>12.1f}")
    ratio, overhead = report['scaling_x2_over_x1'], report['ray_overhead_x1']
    lines.append(f"scaling ray x2 / ray x1: {ratio['min']:.2f} (min), {ratio['median']:.2f} "
                 '(median)')
    lines.append(f"Ray overhead, 1 worker vs in-process: {100 * overhead['min']:+.1f} % (min), "
                 f"{100 * overhead['median']:+.1f} % (median)")
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())
