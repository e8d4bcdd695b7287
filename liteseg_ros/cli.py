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
The ``liteseg`` command line tool.

Subcommands:

- ``liteseg demo [--checkpoint CKPT.pt] [--output DIR] [--variant t|b]``: segment a generated
  street scene and write ``input.png``, ``mask_color.png`` and ``overlay.png``.
- ``liteseg node-demo [--checkpoint MODEL] [--output DIR] [--frames N] [--rate HZ] ...``: run
  the ROS 2 ``segment_node`` as a subprocess, publish a generated image sequence to it over
  DDS, print rates and latency and write the colour masks and overlays it received
  (``make demo``; see ``liteseg_ros.ros.node_demo``).
- ``liteseg bench MODEL [--backend ...] [--frame-size WxH] [--json OUT]``: per-stage latency
  and FPS of a model (see ``liteseg_ros.inference.bench``).
- ``liteseg bag-eval BAG --image-topic T [--label-topic L] --model M [--output DIR]``: accuracy
  and latency on a recorded rosbag2, output bag, contact sheet; ``--live`` replays it against
  a running node; several bags (``--ray`` to run them on Ray) make one fleet report (see
  ``liteseg_ros.bags`` and ``docs/bag_eval.md``).
- ``liteseg dataset-to-bag OUT --dataset cityscapes|camvid|folder ...``: a dataset split as a
  rosbag2 with an image and a label topic (see ``liteseg_ros.bags.dataset_to_bag``).
- ``liteseg weights list`` / ``liteseg weights get NAME [--force]``: PaddleSeg's released
  PP-LiteSeg weights (and STDC backbones) by name, downloaded, converted and cached (see
  ``liteseg_ros.inference.weights``); every model argument takes such a name too.

Heavy imports (torch, ONNX Runtime) happen inside the subcommands, so ``liteseg --help`` is quick.
"""

import argparse
import functools
import logging
from pathlib import Path
import subprocess
import sys
import tempfile

from liteseg_ros.bags import cli as bag_eval, dataset_to_bag
from liteseg_ros.inference import bench as inference_bench

LOG = logging.getLogger('liteseg')

DEMO_HEIGHT, DEMO_WIDTH = 512, 1024
OVERLAY_ALPHA = 0.5
DEMO_ZOO_NAME = 'pp_liteseg_{variant}_cityscapes_0.5'
RANDOM_WEIGHTS_WARNING = (
    'No --checkpoint given: using PP-LiteSeg-{variant} with RANDOM weights. The masks are '
    "meaningless without trained weights. Fetch PaddleSeg's released weights with "
    '`liteseg weights get pp_liteseg_{variant}_cityscapes_0.5` (or convert a downloaded '
    '.pdparams with `python -m training.convert_paddle SRC.pdparams OUT.pt --variant '
    '{variant} --num-classes 19 --dataset cityscapes`) and pass --checkpoint with it.')


def build_parser():
    """Return the argument parser of the ``liteseg`` command."""
    parser = argparse.ArgumentParser(
        prog='liteseg', description='PP-LiteSeg semantic segmentation tools.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')

    demo = sub.add_parser(
        'demo', help='segment a generated street scene and write PNGs',
        description='Segment a procedurally generated 1024x512 street scene and write '
                    'input.png, mask_color.png and overlay.png into the output folder.')
    demo.add_argument('--checkpoint', type=Path, default=None, metavar='CKPT.pt',
                      help='liteseg checkpoint (.pt); without it the model has random '
                           'weights and the masks are meaningless')
    demo.add_argument('--output', type=Path, default=Path('demo_output'), metavar='DIR',
                      help='output folder (default: ./demo_output)')
    demo.add_argument('--variant', choices=('t', 'b'), default='t',
                      help='model variant when no checkpoint is given (default: t)')
    demo.set_defaults(func=run_demo)

    node_demo = sub.add_parser(
        'node-demo', help='run the ROS 2 segmentation node on a generated image sequence',
        description='Start segment_node as a subprocess, publish a generated street scene '
                    'sequence to it over ROS 2, receive its mask, colour and overlay outputs, '
                    'print rates and latency, and write the first frames it received as PNGs.')
    node_demo.add_argument('--checkpoint', type=Path, default=None, metavar='MODEL',
                           help='model: a liteseg checkpoint (.pt, e.g. converted PaddleSeg '
                                'weights), ONNX model or TensorRT engine; without it the model '
                                'has random weights and the masks are meaningless')
    node_demo.add_argument('--variant', choices=('t', 'b'), default='t',
                           help='model variant when no checkpoint is given (default: t)')
    node_demo.add_argument('--output', type=Path, default=Path('demo_output'), metavar='DIR',
                           help='output folder (default: ./demo_output)')
    node_demo.add_argument('--images', type=Path, default=None, metavar='DIR',
                           help='publish the images of DIR (e.g. real camera frames) in name '
                                'order instead of generated scenes')
    node_demo.add_argument('--frames', type=_positive_int, default=None,
                           help='frames to publish (default: 30, or each image of --images '
                                'once)')
    node_demo.add_argument('--rate', type=_positive_float, default=5.0, metavar='HZ',
                           help='publishing rate (default: 5 Hz)')
    node_demo.add_argument('--size', type=_size, default=(DEMO_WIDTH, DEMO_HEIGHT),
                           metavar='WxH', help='generated frame size (default: %dx%d)'
                           % (DEMO_WIDTH, DEMO_HEIGHT))
    node_demo.add_argument('--backend', choices=('auto', 'onnxruntime', 'torch'),
                           default='onnxruntime',
                           help='node backend; a .pt checkpoint is exported to ONNX for '
                                'onnxruntime (default), torch runs it as is')
    node_demo.add_argument('--threads', type=int, default=0,
                           help='inference threads of the node (default: backend default)')
    node_demo.add_argument('--keep', type=_positive_int, default=3,
                           help='received frames to write as PNGs (default: 3)')
    node_demo.add_argument('--timeout', type=_positive_float, default=180.0, metavar='S',
                           help='seconds to wait for the node to start (default: 180)')
    node_demo.set_defaults(func=run_node_demo)

    bench = sub.add_parser(
        'bench', help='time a model: per-stage latency and FPS',
        description='Time preprocess, inference and postprocess of a model on generated '
                    'frames, and the network alone, and print a table.')
    inference_bench.add_arguments(bench)
    bench.set_defaults(func=inference_bench.run)

    bag = sub.add_parser(
        'bag-eval', help='evaluate on a recorded rosbag2: accuracy, latency, output bag',
        description='Run the segmenter on the image topics of a rosbag2 (MCAP or sqlite3) and '
                    'report frames, FPS, per-stage latency and, with label topics, per-class '
                    'IoU, mIoU and pixel accuracy; write DIR/summary.json, DIR/bag, '
                    'DIR/contact_sheet.png and DIR/confusion_matrix.png. Several bags (a '
                    'fleet, optionally on Ray with --ray) get one subfolder each and a fleet '
                    'summary. --live replays the bag against a running segment_node instead.')
    bag_eval.add_arguments(bag)
    bag.set_defaults(func=functools.partial(bag_eval.run, live=_run_live))

    to_bag = sub.add_parser(
        'dataset-to-bag', help='write a dataset split as a rosbag2 (image + label topics)',
        description='Write a Cityscapes or CamVid split, or a folder of images and label PNGs, '
                    'as a rosbag2 with an image topic and a mono8 label topic at a fixed rate.')
    dataset_to_bag.add_arguments(to_bag)
    to_bag.set_defaults(func=dataset_to_bag.run)

    weights = sub.add_parser(
        'weights', help="PaddleSeg's released weights by name: list, download and convert",
        description="List or fetch the PP-LiteSeg checkpoints of PaddleSeg's model zoo and "
                    'the ImageNet STDC backbones. get downloads (resuming a cut download), '
                    'converts and caches under $XDG_CACHE_HOME/liteseg, and prints the '
                    'checkpoint path last; $LITESEG_WEIGHTS_URL replaces the scheme and host '
                    'of the zoo URLs (a mirror). Every model argument also takes these names.')
    weights_sub = weights.add_subparsers(dest='weights_command', metavar='ACTION',
                                         required=True)
    weights_list = weights_sub.add_parser('list', help='names, dataset, classes, zoo mIoU, '
                                                       'cached file')
    weights_list.set_defaults(func=run_weights_list)
    weights_get = weights_sub.add_parser('get', help='download and convert NAME; print its path')
    weights_get.add_argument('name', metavar='NAME', help='a name of `liteseg weights list`')
    weights_get.add_argument('--force', action='store_true',
                             help='download and convert again even when cached')
    weights_get.set_defaults(func=run_weights_get)
    return parser


def run_weights_list(args):
    """Run ``liteseg weights list``; return the process exit code."""
    from liteseg_ros.inference import weights

    for line in weights.describe_catalogue():
        print(line)
    return 0


def run_weights_get(args):
    """Run ``liteseg weights get NAME``: the checkpoint path is the last line on stdout."""
    from liteseg_ros.inference import weights

    print(weights.get(args.name, force=args.force))
    return 0


def _run_live(*args, **kwargs):
    """Run ``liteseg bag-eval --live``: ``ros.live_replay`` is imported only then (rclpy)."""
    from liteseg_ros.ros.live_replay import run_live

    return run_live(*args, **kwargs)


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError('expected a positive integer, got %s' % text)
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError('expected a positive number, got %s' % text)
    return value


def _size(text):
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError('expected WIDTHxHEIGHT, e.g. 1024x512, got %r'
                                         % text) from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError('width and height must be >= 16, got %r' % text)
    return width, height


def _demo_checkpoint(checkpoint, variant, scratch):
    """
    Return (checkpoint path, True if the weights are random).

    Without a checkpoint: PaddleSeg's released Cityscapes weights of the variant (scale 0.5,
    ``liteseg weights get``) when they can be fetched, else random ones, loudly.
    """
    from liteseg_ros.inference import weights

    if checkpoint is not None:
        return weights.checkpoint_file(checkpoint), False
    name = DEMO_ZOO_NAME.format(variant=variant)
    try:
        path = weights.get(name)
    except weights.WeightsError as exc:
        print('Cannot fetch the released weights %s: %s' % (name, exc), flush=True)
    else:
        print("No --checkpoint given: using PaddleSeg's released weights %s (zoo mIoU %s), "
              'cached at %s' % (name, weights.CATALOGUE[name].zoo_miou, path), flush=True)
        return path, False
    message = RANDOM_WEIGHTS_WARNING.format(variant=variant)
    LOG.warning(message)
    print('\n' + '!' * 79 + '\nWARNING: ' + message + '\n' + '!' * 79 + '\n', flush=True)
    import torch

    from liteseg_ros.model import build_model, save_checkpoint

    torch.manual_seed(0)  # random, but the same on every run
    path = Path(scratch) / f'random_{variant}.pt'
    save_checkpoint(path, build_model(variant, 19, dataset='cityscapes'))
    return path, True


def run_demo(args):
    """Run ``liteseg demo``; return the process exit code."""
    import numpy as np

    from liteseg_ros.inference import Segmenter
    from liteseg_ros.inference.outputs import OutputRenderer, write_png
    from liteseg_ros.sample_images import make_street_scene

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint, random_weights = _demo_checkpoint(args.checkpoint, args.variant, scratch)
        segmenter = Segmenter.from_file(checkpoint, backend='torch', upsample='bilinear',
                                        device='cpu')
    config = segmenter.config
    image = make_street_scene(DEMO_HEIGHT, DEMO_WIDTH, seed=0)
    mask = segmenter.segment(image).mask
    elapsed = segmenter.timings['total'] / 1000.0
    renderer = OutputRenderer(segmenter.class_names, segmenter.palette, OVERLAY_ALPHA,
                              drivable_classes=())
    pictures = renderer.render(('color', 'overlay'), image, mask)

    out = Path(args.output)
    files = {'input.png': image, 'mask_color.png': pictures['color'],
             'overlay.png': pictures['overlay']}
    for name, rgb in files.items():
        write_png(out / name, rgb)

    source = args.checkpoint if args.checkpoint is not None else 'random weights'
    print('PP-LiteSeg-%s (%s, %d classes, %s) on a %dx%d image: %.0f ms on CPU'
          % (config['variant'].upper(), config.get('dataset', '?'), config['num_classes'],
             source, DEMO_WIDTH, DEMO_HEIGHT, elapsed * 1000.0))
    counts = np.bincount(mask.ravel(), minlength=config['num_classes'])
    top = np.argsort(counts)[::-1][:5]
    print('Largest classes: ' + ', '.join(
        '%s %.1f%%' % (config['class_names'][i], 100.0 * counts[i] / mask.size)
        for i in top if counts[i]))
    print('Wrote to %s/:' % out.resolve())
    for name in files:
        print('  %s' % (out / name))
    if random_weights:
        print('(random weights: the masks are meaningless, see the warning above)')
    return 0


def _node_demo_model(args, scratch):
    """Return (model file for the node, backend, True if the weights are random)."""
    from liteseg_ros.inference.weights import is_zoo_name

    if (args.checkpoint is not None and not Path(args.checkpoint).is_file()
            and not is_zoo_name(args.checkpoint)):
        raise OSError('%s: no such model file (give a liteseg checkpoint .pt, an ONNX model '
                      'or a TensorRT engine)' % args.checkpoint)
    checkpoint, random_weights = _demo_checkpoint(args.checkpoint, args.variant, scratch)
    if Path(checkpoint).suffix.lower() != '.pt':
        return checkpoint, 'auto', random_weights  # ONNX or engine: backend by file type
    if args.backend != 'onnxruntime':
        return checkpoint, 'torch', random_weights
    # ONNX Runtime is several times faster than PyTorch on a CPU: export once, here.
    onnx_path = Path(scratch) / (Path(checkpoint).stem + '.onnx')
    print('Exporting %s to ONNX for the node (python -m training.export) ...' % checkpoint,
          flush=True)
    result = subprocess.run(
        [sys.executable, '-m', 'training.export', str(checkpoint), '--onnx', str(onnx_path),
         '--no-check'], capture_output=True, text=True)
    if result.returncode != 0 or not onnx_path.is_file():
        LOG.warning('ONNX export failed, the node runs the checkpoint with PyTorch instead '
                    '(slower, same masks up to rounding): %s',
                    (result.stderr or result.stdout).strip().splitlines()[-1:])
        return checkpoint, 'torch', random_weights
    return onnx_path, 'onnxruntime', random_weights


def run_node_demo(args):
    """Run ``liteseg node-demo``; return the process exit code."""
    from liteseg_ros.ros import node_demo

    with tempfile.TemporaryDirectory(prefix='liteseg_node_demo_') as scratch:
        model, backend, random_weights = _node_demo_model(args, scratch)
        args.backend = backend
        return node_demo.run(model, args, random_weights)


def main(argv=None):
    """Entry point of the ``liteseg`` console script; return the exit code."""
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] %(name)s: %(message)s')
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, 'func', None) is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (OSError, ValueError) as exc:
        # CheckpointError is a ValueError: bad files and arguments end in one clear line.
        print('liteseg %s: error: %s' % (args.command, exc), file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
