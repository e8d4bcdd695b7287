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
``liteseg bag-eval`` on the command line: its arguments and what they run.

Offline (default) runs ``bags.evaluation`` with a model loaded here. ``--live`` runs the
``live`` function the caller hands to :func:`run` (``liteseg_ros.cli`` gives
``ros.live_replay.run_live``): the replay speaks ROS 2, and bags/ never imports ros/ (see
docs/architecture.md). Several bags (or ``--ray``) run ``bags.fleet``: one subfolder per bag
and a fleet summary. See docs/bag_eval.md.
"""

from pathlib import Path

from liteseg_ros.bags.evaluation import evaluate_bag, pair_labels, parse_outputs
from liteseg_ros.bags.fleet import exit_code, expand_bags, run_fleet
from liteseg_ros.bags.fleet_bag import FleetRequest
from liteseg_ros.bags.ground_grid import load_grid_config
from liteseg_ros.bags.rosbag import BagError, BagReader, OUTPUT_TYPES
from liteseg_ros.inference.backends import BACKENDS
from liteseg_ros.inference.drivable import DRIVABLE_MODES


def parse_remap(items):
    """Return {bag topic: topic to publish on} from --remap FROM:=TO (or FROM=TO) items."""
    remap = {}
    for item in items or ():
        sep = ':=' if ':=' in item else '='
        source, _, target = item.partition(sep)
        if not source.strip() or not target.strip():
            raise ValueError(f'--remap {item!r}: expected FROM:=TO, e.g. '
                             '/camera/image_color:=/cam0/image_raw')
        remap[source.strip()] = target.strip()
    return remap


def add_arguments(parser):
    """Add ``liteseg bag-eval`` arguments to ``parser``."""
    parser.add_argument('bag', nargs='+', metavar='BAG',
                        help='rosbag2 directory, or a .mcap / .db3 file (MCAP or sqlite3); '
                             'several, globs (quoted) or a .txt file listing bags evaluate a '
                             'fleet: one subfolder of --output per bag and a fleet summary')
    parser.add_argument('--image-topic', action='append', default=[], metavar='TOPIC',
                        help='sensor_msgs/Image or CompressedImage topic; repeat for several '
                             "cameras (default: the bag's only image topic, and its only "
                             'mono8 label topic as --label-topic, as dataset-to-bag writes '
                             'them)')
    parser.add_argument('--label-topic', action='append', default=[], metavar='TOPIC',
                        help='mono8 class-id label images (255 = ignore), matched to frames by '
                             'header stamp; paired with the image topic in the same namespace, '
                             'else label topic i with image topic i')
    parser.add_argument('--model', type=Path, default=None, metavar='MODEL',
                        help='checkpoint (.pt), ONNX model or TensorRT engine; required except '
                             'with --live (the running node has its own model)')
    parser.add_argument('--backend', default='auto', choices=BACKENDS,
                        help='inference backend (default: by model file type)')
    parser.add_argument('--threads', type=int, default=0,
                        help='CPU inference threads (default 0: the backend default; with '
                             '--ray on CPU: per worker, default 1)')
    parser.add_argument('--device', default='auto',
                        help="'auto' (default: the GPU when the backend has one), 'cpu', "
                             "'cuda' or 'cuda:N'")
    parser.add_argument('--upsample', choices=['nearest', 'bilinear'], default='nearest',
                        help="mask upsampling as the node's parameter (default: nearest)")
    parser.add_argument('--batch', type=int, default=1, metavar='N',
                        help='frames per inference call (default 1, as the node with one '
                             'camera)')
    parser.add_argument('--output', type=Path, default=Path('bag_eval_output'), metavar='DIR',
                        help='results folder: summary.json, bag/, contact_sheet.png, '
                             'confusion_matrix.png (default: ./bag_eval_output)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing DIR/bag')
    parser.add_argument('--outputs', default=None, metavar='LIST',
                        help='comma-separated outputs for DIR/bag: mask, mask/compressed, '
                             'color, overlay, drivable_area, drivable_grid (needs '
                             '--camera-poses; live: confidence instead), or none '
                             '(default: mask,color,drivable_area)')
    parser.add_argument('--camera-poses', type=Path, default=None, metavar='YAML',
                        help='camera poses for drivable_grid: poses {namespace: [x, y, z, roll, '
                             'pitch, yaw]} (+ frame_id, resolution, range), or the node params '
                             'file')
    parser.add_argument('--drivable-classes', nargs='+', default=['road'], metavar='CLASS',
                        help='drivable class names, any case (default: road)')
    parser.add_argument('--drivable-mode', choices=DRIVABLE_MODES, default='classes',
                        help="as the node's drivable_mode (default: classes)")
    parser.add_argument('--overlay-alpha', type=float, default=0.5,
                        help='colour weight in overlays (default 0.5)')
    parser.add_argument('--contact-sheet', type=int, default=4, metavar='N',
                        help='frames in contact_sheet.png (default 4; 0: none)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    _add_fleet_arguments(parser)
    live = parser.add_argument_group('live replay (--live, needs rclpy and a running node)')
    live.add_argument('--live', action='store_true',
                      help='replay into the ROS graph against a running segment_node')
    live.add_argument('--rate', type=float, default=1.0,
                      help='replay speed as a multiple of the recorded rate (default 1)')
    live.add_argument('--remap', action='append', default=[], metavar='FROM:=TO',
                      help='publish bag topic FROM on topic TO (repeatable)')
    live.add_argument('--timeout', type=float, default=30.0,
                      help='seconds to wait for the node to appear (default 30)')
    live.add_argument('--drain', type=float, default=3.0,
                      help='after the last frame, wait until this many seconds pass without '
                           'a new output (default 3)')
    live.add_argument('--keep-stamps', action='store_true',
                      help='publish the recorded header stamps instead of the current time '
                           '(the node then needs max_frame_age_ms 0 or use_sim_time)')


def _add_fleet_arguments(parser):
    fleet = parser.add_argument_group('several bags (a fleet)')
    fleet.add_argument('--ray', nargs='?', const='local', default=None,
                       metavar='local|auto|ADDRESS',
                       help="run the bags on Ray: 'local' (the default value) starts Ray on "
                            "this machine, 'auto' or HOST:PORT joins a running cluster "
                            '(needs pip install -r requirements-fleet.txt)')
    fleet.add_argument('--workers', type=int, default=0, metavar='N',
                       help='Ray workers, each keeping one model (default: one per GPU, '
                            'else one per --threads CPUs of the cluster)')
    fleet.add_argument('--resume', action='store_true',
                       help='evaluate only the bags without a complete result in --output')
    fleet.add_argument('--worst-frames', type=int, default=8, metavar='N',
                       help='frames of lowest IoU across the fleet in worst_frames.png '
                            '(default 8)')


def run(args, live=None):
    """
    Run ``liteseg bag-eval``; return the exit code.

    ``live`` runs ``--live`` (with ``ros.live_replay.run_live``'s arguments); without it
    ``--live`` is refused.
    """
    items = list(args.bag)
    if args.ray not in (None, 'local', 'auto') and Path(args.ray).exists():
        # `--ray BAG ...`: argparse took the first bag as the (optional) address.
        items.insert(0, args.ray)
        args.ray = 'local'
    bags = expand_bags(items)
    if not args.image_topic:
        _pick_topics(args, bags[0])
    if args.live:
        if live is None:
            raise ValueError('--live is not available here: it needs the ROS 2 side '
                             '(liteseg_ros.ros.live_replay); run it with the liteseg command')
        if len(bags) != 1 or args.ray or args.resume:
            raise ValueError('--live replays one bag; --ray, --resume and several bags are '
                             'for offline evaluation')
        args.bag = bags[0]
        return _run_live(args, live)
    if args.model is None:
        raise ValueError('--model is required (a .pt checkpoint, .onnx model or .engine); '
                         "only --live runs without one, against the running node's model")
    if len(bags) > 1 or args.ray or args.resume:
        return _run_fleet(args, bags)
    args.bag = bags[0]
    outputs = parse_outputs(args.outputs)
    poses = load_grid_config(args.camera_poses) if args.camera_poses else None
    # Check topics and the output folder before the (slow) model load.
    with BagReader(args.bag) as reader:
        reader.check_topics(args.image_topic, 'image topic')
        reader.check_topics(args.label_topic, 'label topic')
    pair_labels(args.image_topic, args.label_topic)
    bag_out = args.output / 'bag'
    if outputs and bag_out.exists() and not args.overwrite:
        raise BagError(f'{bag_out} exists already; remove it, choose another --output or pass '
                       '--overwrite')
    from liteseg_ros.inference import Segmenter

    segmenter = Segmenter.from_file(args.model, args.backend, upsample=args.upsample,
                                    device=args.device, threads=args.threads)
    summary = evaluate_bag(
        args.bag, args.image_topic, segmenter, args.label_topic, args.output,
        batch=args.batch, outputs=outputs, drivable_classes=args.drivable_classes,
        drivable_mode=args.drivable_mode, overlay_alpha=args.overlay_alpha,
        contact_frames=args.contact_sheet, overwrite=args.overwrite,
        progress=not args.no_progress, model_name=str(args.model),
        camera_poses=poses)
    if summary['interrupted']:
        return 130
    return 0 if summary['frames'] and not summary['read_error'] else 1


def _pick_topics(args, bag):
    """Set --image-topic (and --label-topic, unless given) from the bag's own topics."""
    with BagReader(bag) as reader:
        images, labels = reader.image_and_label_topics()
    args.image_topic = images
    if not args.label_topic:
        args.label_topic = labels
    print(f'bag-eval: image topic {images[0]}'
          + (f', label topic {args.label_topic[0]}' if args.label_topic else ', no label topic')
          + f' (found in {bag})')


def _run_fleet(args, bags):
    if args.workers < 0 or args.worst_frames < 0:
        raise ValueError('--workers and --worst-frames must be >= 0')
    if args.workers and args.ray is None:
        raise ValueError('--workers needs --ray (without it the bags run one after another)')
    from liteseg_ros.inference.weights import resolve_model

    # A zoo name: fetched (and exported) once here, so every worker loads the same file.
    args.model = Path(resolve_model(str(args.model), args.backend))
    if not args.model.exists():
        raise ValueError(f'--model {args.model}: no such file')
    if args.ray is not None:
        from liteseg_ros.bags.fleet_ray import import_ray

        import_ray()  # a missing ray is one line before anything runs
    request = FleetRequest(
        image_topics=list(dict.fromkeys(args.image_topic)), label_topics=args.label_topic,
        model=str(args.model), backend=args.backend, device=args.device,
        threads=args.threads, upsample=args.upsample, batch=args.batch,
        outputs=parse_outputs(args.outputs), drivable_classes=tuple(args.drivable_classes),
        drivable_mode=args.drivable_mode, overlay_alpha=args.overlay_alpha,
        contact_frames=args.contact_sheet, worst_frames=args.worst_frames)
    pair_labels(request.image_topics, request.label_topics)
    summary = run_fleet(bags, args.output, request, ray_address=args.ray, workers=args.workers,
                        resume=args.resume, overwrite=args.overwrite,
                        progress=not args.no_progress)
    return exit_code(summary)


def _run_live(args, run_live):
    outputs = parse_outputs(args.outputs, tuple(OUTPUT_TYPES))
    if args.label_topic:
        print('bag-eval --live: label topics are not used live (accuracy is measured '
              'offline, without --live)')
    summary = run_live(args.bag, args.image_topic, args.output, args.rate, outputs,
                       parse_remap(args.remap), args.timeout, args.drain,
                       args.keep_stamps, args.overwrite, not args.no_progress)
    if summary['interrupted']:
        return 130
    return 0 if summary['matched'] else 1


__all__ = ['add_arguments', 'parse_remap', 'run']
