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
- ``liteseg bench MODEL [--backend ...] [--frame-size WxH] [--json OUT]``: per-stage latency
  and FPS of a model (see ``liteseg_ros.inference.bench``).

Heavy imports (torch, ONNX Runtime) happen inside the subcommands, so ``liteseg --help`` is quick.
"""

import argparse
import logging
from pathlib import Path
import sys
import tempfile

from liteseg_ros.inference import bench as inference_bench

LOG = logging.getLogger('liteseg')

DEMO_HEIGHT, DEMO_WIDTH = 512, 1024
OVERLAY_ALPHA = 0.5
RANDOM_WEIGHTS_WARNING = (
    'No --checkpoint given: using PP-LiteSeg-{variant} with RANDOM weights. The masks are '
    "meaningless without trained weights. Convert PaddleSeg's released weights with "
    '`python -m training.convert_paddle SRC.pdparams OUT.pt --variant {variant} '
    '--num-classes 19 --dataset cityscapes` and pass --checkpoint OUT.pt.')


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

    bench = sub.add_parser(
        'bench', help='time a model: per-stage latency and FPS',
        description='Time preprocess, inference and postprocess of a model on generated '
                    'frames, and the network alone, and print a table.')
    inference_bench.add_arguments(bench)
    bench.set_defaults(func=inference_bench.run)
    return parser


def _demo_checkpoint(checkpoint, variant, scratch):
    """Return (checkpoint path, True if the weights are random)."""
    if checkpoint is not None:
        return checkpoint, False
    message = RANDOM_WEIGHTS_WARNING.format(variant=variant)
    LOG.warning(message)
    print('\n' + '!' * 79 + '\nWARNING: ' + message + '\n' + '!' * 79 + '\n', flush=True)
    import torch

    from liteseg_ros.model import build_model, save_checkpoint

    torch.manual_seed(0)  # random, but the same on every run
    path = Path(scratch) / f'random_{variant}.pt'
    save_checkpoint(path, build_model(variant, 19, dataset='cityscapes'))
    return path, True


def _write_rgb(path, rgb):
    import cv2

    if not cv2.imwrite(str(path), rgb[:, :, ::-1]):
        raise OSError(f'could not write {path} (check the folder exists and is writable)')


def run_demo(args):
    """Run ``liteseg demo``; return the process exit code."""
    import numpy as np

    from liteseg_ros.inference import Segmenter
    from liteseg_ros.inference.visualize import overlay
    from liteseg_ros.sample_images import make_street_scene

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint, random_weights = _demo_checkpoint(args.checkpoint, args.variant, scratch)
        segmenter = Segmenter.from_file(checkpoint, backend='torch', upsample='bilinear')
    config = segmenter.config
    image = make_street_scene(DEMO_HEIGHT, DEMO_WIDTH, seed=0)
    mask = segmenter.segment(image).mask
    elapsed = segmenter.timings['total'] / 1000.0
    color = segmenter.colorize(mask)
    blend = overlay(image, color, OVERLAY_ALPHA)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    files = {'input.png': image, 'mask_color.png': color, 'overlay.png': blend}
    for name, rgb in files.items():
        _write_rgb(out / name, rgb)

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
