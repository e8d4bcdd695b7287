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

r"""
Evaluate a checkpoint as PaddleSeg 2.8 does: mIoU single scale, with flip, or multi-scale.

Per image (``paddleseg.core.infer.aug_inference``): the normalised full image is resized
(bilinear, align_corners=False) to ``eval.size`` times each scale (``int(x * s + 0.5)`` per
side), optionally also mirrored; every logit map is mirrored back, resized to the original
image size and the maps are averaged (PaddleSeg 2.8 averages logits, not probabilities);
the argmax is the prediction. Intersection and union are accumulated over the whole dataset
(``training.metrics.ConfusionMatrix``), ignoring label 255.

Usage::

    python -m training.evaluate --config training/configs/pp_liteseg_t_cityscapes_0.5.yaml \\
        --checkpoint model.pt [--flip] [--scales 0.75 1.0 1.25] [--split val] [--output DIR]
        [--cityscapes-test-output DIR] [--size W H] [--device cuda]
        [--set|--override key=value ...]

prints a per-class IoU table (n/a for a class with neither labels nor predictions), PaddleSeg's
mIoU over all classes, the Cityscapes script's mIoU over the present classes (each named by
what it averages) and pixel accuracy, and writes ``metrics.json`` and
``confusion_matrix.png`` to the output folder (default ``<output_dir>/eval_<split>``).
``--cityscapes-test-output DIR`` also writes each prediction as a Cityscapes label-id PNG
``DIR/<city>/<city>_<seq>_<frame>_leftImg8bit.png``, the names the evaluation server and
cityscapesscripts' ``evalPixelLevelSemanticLabeling`` match (``<city>_<seq>_<frame>*.png``).
"""

import argparse
import json
from pathlib import Path
import sys

import cv2
from liteseg_ros.atomic_file import write_bytes_atomic
from liteseg_ros.classes import CITYSCAPES_TRAINID_LUT
from liteseg_ros.inference.metrics import miou_label
from liteseg_ros.model import CheckpointError, load_model
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from training.config import add_override_arguments, load_config
from training.datasets import build_dataset, CityscapesDataset, DatasetError
from training.metrics import ConfusionMatrix
from training.transforms import build_eval_transforms


def _resize(x, size):
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


def aug_logits(model, image, output_size, eval_size=None, scales=(1.0,), flip=False):
    """
    Return averaged logits (N, C, *output_size) for a normalised NCHW ``image``.

    :param eval_size: (W, H) the image is resized to before scaling; None keeps its size.
    :param scales: factors of ``eval_size``; each gives one forward pass (two with ``flip``).
    :param flip: also run the left-right mirrored image and mirror its logits back.
    """
    if eval_size is not None:
        base_h, base_w = int(eval_size[1]), int(eval_size[0])
    else:
        base_h, base_w = image.shape[-2:]
    flips = (False, True) if flip else (False,)
    total = None
    for scale in scales:
        size = (int(base_h * scale + 0.5), int(base_w * scale + 0.5))
        scaled = _resize(image, size)
        for mirrored in flips:
            logits = model(scaled.flip(-1) if mirrored else scaled)
            if isinstance(logits, (list, tuple)):
                logits = logits[0]
            logits = logits.float()
            if mirrored:
                logits = logits.flip(-1)
            logits = _resize(logits, output_size)
            total = logits if total is None else total + logits
    return total / (len(scales) * len(flips))


def _unwrap(model):
    # A DistributedDataParallel forward syncs buffers across ranks; ranks evaluate different
    # numbers of images, so run the wrapped module itself.
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def evaluate(model, dataset, num_classes, eval_size=None, scales=(1.0,), flip=False,
             device='cpu', progress=True, num_workers=0, on_prediction=None):
    """
    Evaluate ``model`` on ``dataset`` and return the metrics.

    :param dataset: items (normalised float CHW image, original-size label), e.g. from
        ``build_dataset(config, 'val', build_eval_transforms(config))``.
    :param eval_size: (W, H) the normalised image is resized to (the config's ``eval.size``).
    :param scales: multi-scale factors of ``eval_size``; :param flip: add mirrored passes.
    :param on_prediction: optional ``callback(index, prediction)`` with the HxW int64 class
        map of every image (e.g. to write test-server PNGs).
    :returns: dict with ``miou`` (PaddleSeg: absent classes count 0), ``miou_present_classes``
        (cityscapesscripts: classes with neither labels nor predictions skipped; None when
        none occurs), ``classes_present``, ``pixel_accuracy``, ``per_class_iou`` {class name:
        IoU}, ``confusion`` (ndarray, rows ground truth), ``num_images`` and ``has_labels``. Under
        torch.distributed every process evaluates a share and all get the summed result.
    """
    net = _unwrap(model)
    was_training = net.training
    net.eval()
    confusion = ConfusionMatrix(num_classes, getattr(dataset, 'ignore_index', 255))
    rank, world = 0, 1
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    indices = list(range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices),
                                         batch_size=None, num_workers=num_workers)
    has_labels = getattr(dataset, 'has_labels', True)
    bar = tqdm(loader, total=len(indices), desc='evaluate', unit='img',
               disable=not progress or rank != 0, dynamic_ncols=True)
    try:
        with torch.no_grad():
            for index, (image, label) in zip(indices, bar):
                image = image.unsqueeze(0).to(device)
                logits = aug_logits(net, image, label.shape[-2:], eval_size, scales, flip)
                pred = logits.argmax(dim=1)[0]
                if has_labels:
                    confusion.update(pred, label.to(pred.device))
                    if rank == 0 and progress:
                        bar.set_postfix(mIoU=f'{100 * confusion.miou():.2f}')
                if on_prediction is not None:
                    on_prediction(index, pred.cpu().numpy())
    finally:
        net.train(was_training)
    confusion.reduce_distributed()
    names = list(getattr(dataset, 'class_names', []))
    if len(names) != num_classes:
        names = [f'class_{i}' for i in range(num_classes)]
    iou = confusion.iou()
    present = confusion.present()
    return {'miou': confusion.miou(),
            'miou_present_classes': confusion.miou(skip_empty=True) if present.any() else None,
            'classes_present': [n for n, p in zip(names, present) if p],
            'pixel_accuracy': confusion.pixel_accuracy(),
            'per_class_iou': dict(zip(names, iou.tolist())), 'confusion': confusion.numpy(),
            'num_images': len(dataset), 'has_labels': has_labels}


def cityscapes_prediction_path(out_dir, sample_id):
    """Return ``out_dir/<city>/<sample_id>_leftImg8bit.png`` for ``<city>_<seq>_<frame>``."""
    city = sample_id.split('_')[0]
    return Path(out_dir) / city / f'{sample_id}_leftImg8bit.png'


def write_cityscapes_prediction(out_dir, sample_id, prediction):
    """Write a train-id prediction as a Cityscapes label-id PNG; return its path."""
    prediction = np.asarray(prediction)
    if prediction.size and (prediction.min() < 0 or prediction.max() > 18):
        raise ValueError(f'{sample_id}: Cityscapes predictions are train ids 0..18, found '
                         f'{prediction.min()}..{prediction.max()}')
    path = cityscapes_prediction_path(out_dir, sample_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), CITYSCAPES_TRAINID_LUT[prediction.astype(np.uint8)]):
        raise OSError(f'{path}: could not write PNG')
    return path


def format_table(result):
    """
    Return the per-class IoU table and the summary lines as text.

    Classes with neither labels nor predictions show n/a; both mIoUs are named by what they
    average (``inference.metrics.miou_label``).
    """
    names = list(result['per_class_iou'])
    present = set(result.get('classes_present', names))
    figures = [(miou_label(len(names)), result['miou'])]
    if result.get('miou_present_classes') is not None:
        figures.append((miou_label(len(names), len(present)), result['miou_present_classes']))
    figures.append(('pixel accuracy', result['pixel_accuracy']))
    width = max([len(n) for n in names] + [len(text) for text, _ in figures] + [5])
    lines = [f"{'class':<{width}}  IoU (%)"]
    lines += [f'{name:<{width}}  ' + (f'{100 * iou:7.2f}' if name in present else '    n/a')
              for name, iou in result['per_class_iou'].items()]
    lines.append('-' * (width + 9))
    lines += [f'{text:<{width}}  {100 * value:7.2f}' for text, value in figures]
    return '\n'.join(lines)


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog='python -m training.evaluate',
                                     description='Evaluate a liteseg checkpoint (mIoU as '
                                     'PaddleSeg computes it).')
    parser.add_argument('--config', required=True, help='training config (YAML)')
    parser.add_argument('--checkpoint', required=True, help='liteseg checkpoint (.pt)')
    parser.add_argument('--split', default='val', choices=['train', 'val', 'test'])
    parser.add_argument('--flip', action='store_true', help='add horizontally mirrored passes')
    parser.add_argument('--scales', type=float, nargs='+',
                        help='multi-scale factors of the eval size (default: config eval.scales)')
    parser.add_argument('--size', type=int, nargs=2, metavar=('W', 'H'),
                        help='resize the image to W x H (default: config eval.size)')
    parser.add_argument('--output', help='output folder (default: <output_dir>/eval_<split>)')
    parser.add_argument('--cityscapes-test-output', metavar='DIR',
                        help='also write label-id PNGs for the Cityscapes evaluation server')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--num-workers', type=int, default=2, help='data loader workers')
    add_override_arguments(parser)
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        model = load_model(args.checkpoint).to(args.device)
        num_classes = config['model']['num_classes']
        if model.config['num_classes'] != num_classes:
            raise CheckpointError(f'{args.checkpoint}: checkpoint has '
                                  f"{model.config['num_classes']} classes, config "
                                  f'{args.config} has model.num_classes={num_classes}')
        test_output = args.cityscapes_test_output
        if test_output and config['dataset']['type'] != 'cityscapes':
            raise ValueError('--cityscapes-test-output needs a cityscapes dataset, config has '
                             f"dataset.type={config['dataset']['type']}")
        dataset = build_dataset(config, args.split, build_eval_transforms(config),
                                require_labels=not (test_output and args.split == 'test'))
    except (ValueError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    eval_cfg = config['eval']
    size = args.size or eval_cfg.get('size')
    scales = args.scales or eval_cfg.get('scales') or [1.0]
    flip = args.flip or bool(eval_cfg.get('flip'))
    callback = None
    if test_output and isinstance(dataset, CityscapesDataset):
        def write(index, prediction):
            write_cityscapes_prediction(test_output, dataset.sample_id(index), prediction)
        callback = write
    print(f'evaluating {args.checkpoint} on {len(dataset)} {args.split} images: size '
          f"{'x'.join(map(str, size)) if size else 'native'}, scales {scales}, "
          f"flip {'on' if flip else 'off'}, device {args.device}")
    try:
        result = evaluate(model, dataset, num_classes, size, scales, flip, args.device,
                          not args.no_progress, args.num_workers, callback)
    except DatasetError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    out_dir = Path(args.output or Path(config['output_dir']) / f'eval_{args.split}')
    out_dir.mkdir(parents=True, exist_ok=True)
    if test_output:
        print(f'wrote {len(dataset)} Cityscapes label-id predictions to {test_output}')
    if not result['has_labels']:
        print(f'{args.split}: no labels, no metrics computed')
        return 0
    print(format_table(result))
    metrics = {key: result[key] for key in ('miou', 'miou_present_classes', 'classes_present',
                                            'pixel_accuracy', 'per_class_iou', 'num_images')}
    metrics.update({'confusion': result['confusion'].tolist(), 'config': str(args.config),
                    'checkpoint': str(args.checkpoint), 'split': args.split,
                    'size': list(size) if size else None, 'scales': list(scales),
                    'flip': flip})
    write_bytes_atomic(out_dir / 'metrics.json', json.dumps(metrics, indent=2).encode())
    confusion = ConfusionMatrix(num_classes)
    confusion.matrix = np.asarray(result['confusion'], np.int64)
    confusion.plot(out_dir / 'confusion_matrix.png', list(result['per_class_iou']),
                   title=f'{Path(args.checkpoint).name} on {args.split}: '
                         f'{confusion.miou_label()} {100 * result["miou"]:.2f}')
    print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'confusion_matrix.png'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
