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
PaddleSeg 2.8's own trainer and evaluator on a liteseg training config (paddle venv only).

Run by ``benchmarks/camvid_reproduction.py`` with the reference trainer venv's Python
(paddlepaddle 2.6.2, the release PaddleSeg 2.8 was made for; no patches):

    train CONFIG.json OUT_DIR --seed N   PaddleSeg's tools/train.py steps: Config, SegBuilder,
                                         utils.set_seed, paddleseg.core.train
    val CONFIG.json MODEL.pdparams OUT.json [--split val|test]
                                         PaddleSeg's tools/val.py: paddleseg.core.evaluate

CONFIG.json is the resolved liteseg config (``training.config.load_config``); ``paddle_config``
translates it into PaddleSeg's YAML schema, one key for one key.
"""

import argparse
import json
from pathlib import Path
import sys

# paddle 2.6's bundled zlib breaks scikit-learn's import when paddle comes first (SIGSEGV or
# "inconsistent stream state"); PaddleSeg imports sklearn.metrics, so import it before paddle.
import sklearn.metrics  # noqa: F401, I100

VARIANT_MODELS = {
    't': {'backbone': 'STDC1', 'arm_out_chs': [32, 64, 128], 'seg_head_inter_chs': [32, 64, 64]},
    'b': {'backbone': 'STDC2', 'arm_out_chs': [64, 96, 128], 'seg_head_inter_chs': [64, 64, 64]},
}


def paddle_config(config):
    """Return PaddleSeg 2.8's config dict for a resolved liteseg config (CamVid-style lists)."""
    data, train, model = config['dataset'], config['train'], config['model']
    root = str(Path(data['root']).resolve())
    num_classes = model['num_classes']
    scale, distort = train['scale'], train['distort']
    arch = VARIANT_MODELS[model['variant']]
    return {
        'batch_size': train['batch_size'],
        'iters': train['iters'],
        'train_dataset': {
            'type': 'Dataset', 'dataset_root': root, 'num_classes': num_classes, 'mode': 'train',
            'train_path': str(Path(root) / data['train_list']),
            'ignore_index': data['ignore_index'],
            'transforms': [
                {'type': 'ResizeStepScaling', 'min_scale_factor': scale['min'],
                 'max_scale_factor': scale['max'], 'scale_step_size': scale['step']},
                {'type': 'RandomPaddingCrop', 'crop_size': list(train['crop_size'])},
                {'type': 'RandomHorizontalFlip', 'prob': train['flip_prob']},
                {'type': 'RandomDistort',
                 'brightness_range': distort['brightness'], 'brightness_prob': distort['prob'],
                 'contrast_range': distort['contrast'], 'contrast_prob': distort['prob'],
                 'saturation_range': distort['saturation'], 'saturation_prob': distort['prob'],
                 'hue_range': distort['hue'], 'hue_prob': distort['prob']},
                {'type': 'Normalize', 'mean': list(model.get('mean', [0.5] * 3)),
                 'std': list(model.get('std', [0.5] * 3))},
            ],
        },
        'val_dataset': _eval_dataset(config, data['val_list']),
        'optimizer': {'type': 'SGD', 'momentum': config['optimizer']['momentum'],
                      'weight_decay': config['optimizer']['weight_decay']},
        'lr_scheduler': {
            'type': 'PolynomialDecay', 'learning_rate': config['optimizer']['lr'],
            'end_lr': config['schedule']['end_lr'], 'power': config['schedule']['power'],
            'warmup_iters': config['schedule']['warmup_iters'],
            'warmup_start_lr': config['schedule']['warmup_start_lr']},
        'loss': {
            'types': [{'type': 'OhemCrossEntropyLoss', 'thresh': config['loss']['thresh'],
                       'min_kept': config['loss']['min_kept'],
                       'ignore_index': config['loss']['ignore_index']}] * 3,
            'coef': list(config['loss']['coefs'])},
        'model': {'type': 'PPLiteSeg', 'num_classes': num_classes,
                  'backbone': {'type': arch['backbone'], 'pretrained': None},
                  'arm_out_chs': arch['arm_out_chs'],
                  'seg_head_inter_chs': arch['seg_head_inter_chs']},
        'test_config': {'is_slide': False, 'aug_eval': False},
    }


def _eval_dataset(config, list_file):
    data, model = config['dataset'], config['model']
    root = str(Path(data['root']).resolve())
    eval_w, eval_h = config['eval']['size']
    return {'type': 'Dataset', 'dataset_root': root, 'num_classes': model['num_classes'],
            'mode': 'val', 'val_path': str(Path(root) / list_file),
            'ignore_index': data['ignore_index'],
            'transforms': [{'type': 'Resize', 'target_size': [eval_w, eval_h]},
                           {'type': 'Normalize', 'mean': list(model.get('mean', [0.5] * 3)),
                            'std': list(model.get('std', [0.5] * 3))}]}


def _write_yaml(config, path):
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _one_element_losses(losses):
    """
    Return PaddleSeg's loss dict with each loss reshaped from 0-d to [1].

    PaddleSeg 2.8's train loop logs ``loss[0]``, written for the 1-element losses of paddle
    before 2.5; paddle 2.5+ returns 0-d tensors. The reshape changes no value or gradient.
    """
    import paddle

    class OneElement(paddle.nn.Layer):

        def __init__(self, loss):
            super().__init__()
            self.loss = loss

        def forward(self, *args, **kwargs):
            return self.loss(*args, **kwargs).reshape([1])

    return {**losses, 'types': [OneElement(loss) for loss in losses['types']]}


def _stack_class_areas():
    """
    Make PaddleSeg's ``metrics.calculate_area`` stack its per-class counts.

    It concatenates the per-class sums, which are 0-d tensors on paddle 2.5+, and paddle refuses
    to concatenate 0-d tensors. Stacking them gives the [num_classes] tensors it meant; the
    counting is the original's, line for line.
    """
    import paddle
    from paddleseg.utils import metrics

    def calculate_area(pred, label, num_classes, ignore_index=255):
        if len(pred.shape) == 4:
            pred = paddle.squeeze(pred, axis=1)
        if len(label.shape) == 4:
            label = paddle.squeeze(label, axis=1)
        mask = label != ignore_index
        pred_area, label_area, intersect_area = [], [], []
        for i in range(num_classes):
            pred_i = paddle.logical_and(pred == i, mask)
            label_i = label == i
            intersect_i = paddle.logical_and(pred_i, label_i)
            pred_area.append(paddle.sum(paddle.cast(pred_i, 'int64')))
            label_area.append(paddle.sum(paddle.cast(label_i, 'int64')))
            intersect_area.append(paddle.sum(paddle.cast(intersect_i, 'int64')))
        return paddle.stack(intersect_area), paddle.stack(pred_area), paddle.stack(label_area)

    metrics.calculate_area = calculate_area


def run_train(config, out_dir, seed, num_workers, evaluate=True):
    """Train as PaddleSeg's tools/train.py does (one process, CPU)."""
    from paddleseg import utils
    from paddleseg.core import train
    from paddleseg.cvlibs import Config, SegBuilder

    _stack_class_areas()
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = _write_yaml(paddle_config(config), out_dir / 'paddleseg_config.yml')
    cfg = Config(str(cfg_path))
    builder = SegBuilder(cfg)
    utils.set_seed(seed)
    utils.set_device('cpu')
    utils.set_cv2_num_threads(num_workers)
    train(builder.model, builder.train_dataset,
          val_dataset=builder.val_dataset if evaluate else None,
          optimizer=builder.optimizer, save_dir=str(out_dir), iters=cfg.iters,
          batch_size=cfg.batch_size, save_interval=config['train']['eval_every'],
          log_iters=config['train']['log_every'], num_workers=num_workers, use_vdl=False,
          losses=_one_element_losses(builder.loss), keep_checkpoint_max=1,
          test_config=cfg.test_config)


def run_val(config, model_path, out_json, split):
    """Evaluate as PaddleSeg's tools/val.py does and write mIoU and per-class IoU."""
    from paddleseg import utils
    from paddleseg.core import evaluate
    from paddleseg.cvlibs import Config, SegBuilder

    _stack_class_areas()
    paddle_cfg = paddle_config(config)
    list_file = config['dataset'][f'{split}_list']
    paddle_cfg['val_dataset'] = _eval_dataset(config, list_file)
    cfg_path = _write_yaml(paddle_cfg, out_json.with_suffix('.yml'))
    cfg = Config(str(cfg_path))
    builder = SegBuilder(cfg)
    utils.set_device('cpu')
    model = builder.model
    utils.load_entire_model(model, str(model_path))
    model.eval()
    miou, acc, class_iou, _, kappa = evaluate(model, builder.val_dataset, num_workers=0,
                                              print_detail=True, is_slide=False)
    out_json.write_text(json.dumps({'miou': float(miou), 'acc': float(acc),
                                    'class_iou': [float(x) for x in class_iou],
                                    'split': split}, indent=1))


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p_train = sub.add_parser('train')
    p_train.add_argument('config', type=Path)
    p_train.add_argument('out_dir', type=Path)
    p_train.add_argument('--seed', type=int, required=True)
    p_train.add_argument('--num-workers', type=int, default=0)
    p_train.add_argument('--no-eval', action='store_true', help='no validation (speed runs)')
    p_val = sub.add_parser('val')
    p_val.add_argument('config', type=Path)
    p_val.add_argument('model', type=Path)
    p_val.add_argument('out_json', type=Path)
    p_val.add_argument('--split', default='test', choices=['val', 'test'])
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text())
    if args.command == 'train':
        run_train(config, args.out_dir, args.seed, args.num_workers, not args.no_eval)
    else:
        run_val(config, args.model, args.out_json, args.split)
    return 0


if __name__ == '__main__':
    sys.exit(main())
