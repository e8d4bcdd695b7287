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
OHEM loss, confusion-matrix metrics and evaluation against independent computations.

- OHEM: a straightforward numpy implementation written from the rule (sort, pick, mask,
  average) on random inputs with ignored pixels and every min_kept regime; and PaddleSeg's
  own ``OhemCrossEntropyLoss`` (loss and gradient) in the reference venv.
- mIoU: cityscapesscripts' official ``evalPixelLevelSemanticLabeling`` on label-id PNGs
  written by our test-server writer, found by its own file matching.
- evaluate(): a direct re-computation (resize, forward, flip, average, argmax, per-class
  areas as PaddleSeg's ``calculate_area``) with a small model; the CLI end to end.
"""

import json
import os
from pathlib import Path
import sys

import cv2
from liteseg_ros.classes import CITYSCAPES_ID_LUT
from liteseg_ros.model import build_model, save_checkpoint
import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from training.config import load_config
from training.datasets import CityscapesDataset
from training.evaluate import (cityscapes_prediction_path, evaluate, main as evaluate_main,
                               write_cityscapes_prediction)
from training.losses import build_loss, MultiHeadLoss, OHEMCrossEntropy
from training.metrics import ConfusionMatrix
from training.synthetic_data import make_cityscapes_like
from training.transforms import build_eval_transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paddle_reference import env as paddle_env  # noqa: E402,I100
from paddle_reference.transforms_reference import run_reference  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CITY_CONFIG = REPO / 'training' / 'configs' / 'pp_liteseg_t_cityscapes_0.5.yaml'


# --- OHEM ---------------------------------------------------------------------------------

def reference_ohem(logits, label, thresh, min_kept, ignore_index=255):
    """OHEM written from its definition, in float64 numpy with explicit sorting."""
    logits = logits.astype(np.float64)
    n, c, h, w = logits.shape
    flat = logits.transpose(0, 2, 3, 1).reshape(-1, c)
    labels = label.reshape(-1)
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    valid = [i for i in range(labels.size) if labels[i] != ignore_index]
    kept = set(valid)
    if 0 < min_kept < len(valid):
        prob = {i: float(np.exp(log_prob[i, labels[i]])) for i in valid}
        ordered = sorted(prob[i] for i in valid)
        kth = ordered[min_kept - 1]
        threshold = kth if kth > thresh else thresh
        kept = {i for i in valid if prob[i] < threshold}
    total = sum(-log_prob[i, labels[i]] for i in kept)
    pixels = labels.size
    return (total / pixels) / (len(kept) / pixels + 1e-5), kept


def _random_case(seed, n=2, c=5, h=7, w=9, ignore_fraction=0.2, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, c, h, w)) * scale).astype(np.float32)
    label = rng.integers(0, c, size=(n, h, w))
    label[rng.random((n, h, w)) < ignore_fraction] = 255
    return logits, label


OHEM_CASES = {  # name: (seed, min_kept, thresh, ignore fraction, logit scale)
    'kth_below_thresh': (0, 20, 0.7, 0.2, 3.0),
    'kth_above_thresh': (1, 100, 0.7, 0.2, 3.0),
    'kth_above_low_thresh': (2, 60, 0.05, 0.1, 1.0),
    'min_kept_one': (3, 1, 0.7, 0.2, 3.0),
    'min_kept_zero_plain_ce': (4, 0, 0.7, 0.2, 3.0),
    'min_kept_equals_valid': (5, None, 0.7, 0.2, 3.0),
    'min_kept_above_valid': (6, 10 ** 6, 0.7, 0.2, 3.0),
    'no_ignore': (7, 50, 0.7, 0.0, 3.0),
    'all_ignored': (8, 10, 0.7, 1.0, 3.0),
    'confident': (9, 30, 0.7, 0.3, 12.0),
}


def _ohem_inputs(name):
    seed, min_kept, thresh, ignore, scale = OHEM_CASES[name]
    logits, label = _random_case(seed, ignore_fraction=ignore, scale=scale)
    if min_kept is None:
        min_kept = int((label != 255).sum())
    return logits, label, thresh, min_kept


@pytest.mark.parametrize('name', sorted(OHEM_CASES))
def test_ohem_matches_straightforward_implementation(name):
    logits, label, thresh, min_kept = _ohem_inputs(name)
    loss_fn = OHEMCrossEntropy(thresh=thresh, min_kept=min_kept)
    ours = loss_fn(torch.from_numpy(logits), torch.from_numpy(label))
    expected, kept = reference_ohem(logits, label, thresh, min_kept)
    mask = loss_fn.kept_mask(torch.from_numpy(logits), torch.from_numpy(label))
    assert set(np.flatnonzero(mask.numpy()).tolist()) == kept
    # float32 log-softmax and a mean over <= 126 pixels vs float64: ~1e-6 relative; abs for 0.
    assert float(ours) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    valid = int((label != 255).sum())
    if name == 'kth_above_thresh':
        assert 0 < len(kept) < min_kept  # the k-th pixel itself is not kept (strict <)
    if name in ('min_kept_zero_plain_ce', 'min_kept_equals_valid', 'min_kept_above_valid'):
        assert len(kept) == valid
    if name == 'all_ignored':
        assert float(ours) == 0.0


def test_ohem_gradient_flows_through_kept_pixels_only():
    logits, label, thresh, min_kept = _ohem_inputs('kth_below_thresh')
    x = torch.from_numpy(logits).requires_grad_()
    OHEMCrossEntropy(thresh, min_kept)(x, torch.from_numpy(label)).backward()
    _, kept = reference_ohem(logits, label, thresh, min_kept)
    touched = x.grad.abs().sum(dim=1).reshape(-1) > 0
    assert set(np.flatnonzero(touched.numpy()).tolist()) == kept


def test_multi_head_loss_sums_weighted_heads():
    logits, label, _, _ = _ohem_inputs('no_ignore')
    heads = [torch.from_numpy(logits) * s for s in (1.0, 0.5, 2.0)]
    ohem = OHEMCrossEntropy(0.7, 40)
    total = MultiHeadLoss(ohem, [1.0, 0.4, 0.25])(heads, torch.from_numpy(label))
    expected = sum(coef * reference_ohem(h.numpy(), label, 0.7, 40)[0]
                   for coef, h in zip([1.0, 0.4, 0.25], heads))
    assert float(total) == pytest.approx(expected, rel=1e-5)  # float32 vs float64, as above
    loss = build_loss(load_config(CITY_CONFIG))
    assert loss.coefs == [1.0, 1.0, 1.0]
    assert (loss.loss.thresh, loss.loss.min_kept, loss.loss.ignore_index) == (0.7, 130000, 255)


@pytest.mark.paddle
def test_ohem_matches_paddleseg(tmp_path):
    with paddle_env.required_in_ci():
        python = paddle_env.ensure_paddle_venv()
    cases = []
    for name in sorted(OHEM_CASES):
        logits, label, thresh, min_kept = _ohem_inputs(name)
        np.save(tmp_path / f'{name}_logits.npy', logits)
        np.save(tmp_path / f'{name}_label.npy', label.astype(np.int64))
        cases.append({'name': name, 'logits': str(tmp_path / f'{name}_logits.npy'),
                      'label': str(tmp_path / f'{name}_label.npy'), 'thresh': thresh,
                      'min_kept': min_kept, 'ignore_index': 255})
    reference = run_reference({'ohem': cases}, tmp_path / 'out', python)['ohem']
    for name in sorted(OHEM_CASES):
        logits, label, thresh, min_kept = _ohem_inputs(name)
        x = torch.from_numpy(logits).requires_grad_()
        loss = OHEMCrossEntropy(thresh, min_kept)(x, torch.from_numpy(label))
        loss.backward()
        paddle_loss = float(reference[f'loss/{name}'])
        # Two float32 log-softmaxes: ~1e-6 of the loss apart; abs for a loss of 0.
        assert float(loss.detach()) == pytest.approx(paddle_loss, rel=1e-5, abs=1e-7), name
        # Gradients (p - onehot) / kept pixels, <= ~1e-2: atol is ~1e-5 of the largest.
        np.testing.assert_allclose(x.grad.numpy(), reference[f'grad/{name}'], rtol=1e-4,
                                   atol=1e-7, err_msg=name)


# --- confusion matrix -----------------------------------------------------------------------

def paddleseg_areas(pred, label, num_classes, ignore_index=255):
    """Return PaddleSeg's calculate_area, class by class."""
    mask = label != ignore_index
    intersect, pred_area, label_area = [], [], []
    for i in range(num_classes):
        pred_i = (pred == i) & mask
        label_i = label == i
        intersect.append(int((pred_i & label_i).sum()))
        pred_area.append(int(pred_i.sum()))
        label_area.append(int(label_i.sum()))
    return np.array(intersect), np.array(pred_area), np.array(label_area)


def paddleseg_miou(intersect, pred_area, label_area):
    union = pred_area + label_area - intersect
    iou = [0.0 if u == 0 else i / u for i, u in zip(intersect, union)]
    return np.array(iou), float(np.mean(iou)), float(intersect.sum() / pred_area.sum())


def test_confusion_matrix_equals_paddleseg_areas():
    rng = np.random.default_rng(0)
    num_classes = 6
    confusion = ConfusionMatrix(num_classes)
    totals = [np.zeros(num_classes, np.int64) for _ in range(3)]
    for step in range(4):
        label = rng.integers(0, num_classes - 1, (13, 17))  # class 5 never in labels...
        label[rng.random(label.shape) < 0.15] = 255
        pred = rng.integers(0, num_classes - 2, (13, 17))  # ... nor in predictions
        confusion.update(torch.from_numpy(pred) if step % 2 else pred, label)
        for total, area in zip(totals, paddleseg_areas(pred, label, num_classes)):
            total += area
    iou, miou, accuracy = paddleseg_miou(*totals)
    # Ratios of the same integer counts in float64: round-off only (~1e-16).
    np.testing.assert_allclose(confusion.iou(), iou, rtol=1e-12)
    assert confusion.iou()[5] == 0.0  # empty union counts 0 in PaddleSeg's mean
    assert confusion.miou() == pytest.approx(miou, rel=1e-12)
    assert confusion.miou(skip_empty=True) == pytest.approx(np.mean(iou[:5]), rel=1e-12)
    assert confusion.pixel_accuracy() == pytest.approx(accuracy, rel=1e-12)
    intersect, pred_area, label_area = confusion.areas()
    np.testing.assert_array_equal(intersect, totals[0])
    np.testing.assert_array_equal(pred_area, totals[1])
    np.testing.assert_array_equal(label_area, totals[2])
    with pytest.raises(ValueError, match='prediction values must be in 0..5'):
        confusion.update(np.array([6]), np.array([1]))
    with pytest.raises(ValueError, match='label values'):
        confusion.update(np.array([1]), np.array([7]))
    with pytest.raises(ValueError, match='shape'):
        confusion.update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_confusion_matrix_plot(tmp_path):
    confusion = ConfusionMatrix(3)
    confusion.update(np.array([0, 1, 2, 2, 1]), np.array([0, 1, 2, 1, 255]))
    path = confusion.plot(tmp_path / 'confusion.png', ['road', 'car', 'sky'])
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 200


def _cityscapes_eval_module(results_dir, monkeypatch):
    module = pytest.importorskip('cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling')
    monkeypatch.setenv('CITYSCAPES_RESULTS', str(results_dir))
    args = module.args
    for key, value in (('evalInstLevelScore', False), ('JSONOutput', False), ('quiet', True),
                       ('predictionPath', None), ('predictionWalk', None),
                       ('colorized', False)):
        monkeypatch.setattr(args, key, value)
    return module


@pytest.mark.parametrize('with_empty_class', [False, True])
def test_miou_equals_cityscapesscripts(tmp_path, monkeypatch, with_empty_class):
    rng = np.random.default_rng(1)
    label_ids = np.arange(34)
    dataset_root, results = tmp_path / 'cityscapes', tmp_path / 'results'
    for index, city in enumerate(('lindau', 'munster', 'lindau')):
        gt = rng.choice(label_ids, size=(48, 64)).astype(np.uint8)
        if with_empty_class:
            gt[gt == 28] = 26  # no bus anywhere...
        stem = f'{city}_{index:06d}_000019'
        gt_path = dataset_root / 'gtFine' / 'val' / city / f'{stem}_gtFine_labelIds.png'
        gt_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(gt_path), gt)
        image_path = dataset_root / 'leftImg8bit' / 'val' / city / f'{stem}_leftImg8bit.png'
        image_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image_path), np.zeros((48, 64, 3), np.uint8))
    dataset = CityscapesDataset(dataset_root, 'val', build_eval_transforms())
    ground_truth = [str(dataset.label_path(i)) for i in range(len(dataset))]
    stems = [Path(p).name[:-len('_gtFine_labelIds.png')] for p in ground_truth]
    confusion = ConfusionMatrix(19)
    for index in range(len(dataset)):
        label = dataset[index][1].numpy()
        train_ids = CITYSCAPES_ID_LUT[cv2.imread(ground_truth[index], cv2.IMREAD_UNCHANGED)]
        np.testing.assert_array_equal(label, train_ids)
        pred = np.where(rng.random(label.shape) < 0.6, np.where(label == 255, 0, label),
                        rng.integers(0, 19, label.shape))
        if with_empty_class:
            pred[pred == 15] = 13  # ... and no bus predicted
        confusion.update(pred, label)
        path = write_cityscapes_prediction(results, dataset.sample_id(index), pred)
        assert path == cityscapes_prediction_path(results, stems[index])
    module = _cityscapes_eval_module(results, monkeypatch)
    predictions = [module.getPrediction(module.args, gt) for gt in ground_truth]
    assert [Path(p).name for p in predictions] == [f'{s}_leftImg8bit.png' for s in stems]
    official = module.evaluateImgLists(predictions, ground_truth, module.args)
    ours = confusion.iou(empty=np.nan)
    # Both are float64 ratios of the same integer counts: rel=1e-12 is round-off.
    for train_id, name in enumerate(dataset.class_names):
        score = official['classScores'][name]
        if np.isnan(ours[train_id]):
            assert np.isnan(score), name
        else:
            assert score == pytest.approx(ours[train_id], rel=1e-12), name
    assert official['averageScoreClasses'] == pytest.approx(
        confusion.miou(skip_empty=True), rel=1e-12)
    if not with_empty_class:
        assert official['averageScoreClasses'] == pytest.approx(confusion.miou(), rel=1e-12)
    else:  # PaddleSeg counts the empty class as 0, Cityscapes skips it
        assert confusion.miou() == pytest.approx(  # float64: round-off only
            confusion.miou(skip_empty=True) * 18 / 19, rel=1e-12)


@pytest.mark.slow
def test_reduce_distributed_sums_over_processes(tmp_path):
    import socket
    import torch.multiprocessing as mp
    make_cityscapes_like(tmp_path / 'data', 0, 5, size=(32, 64), seed=2)
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    mp.spawn(_distributed_worker, args=(2, str(tmp_path), port), nprocs=2, join=True)
    results = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in range(2)]
    single = _tiny_evaluate(tmp_path / 'data')
    for result in results:
        # Rank 0 evaluated images 0, 2, 4 and rank 1 images 1, 3: both hold the full sum.
        assert result['confusion'] == single['confusion'].tolist()
        assert result['miou'] == pytest.approx(single['miou'], rel=1e-12)  # same counts
        assert result['manual'] == [[3, 3, 3]] * 3  # 1 from rank 0 + 2 from rank 1


def _distributed_worker(rank, world, tmp, port):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        manual = ConfusionMatrix(3)
        manual.matrix += rank + 1
        manual.reduce_distributed()
        result = _tiny_evaluate(Path(tmp) / 'data')
        Path(tmp, f'rank{rank}.json').write_text(json.dumps({
            'confusion': result['confusion'].tolist(), 'miou': result['miou'],
            'manual': manual.numpy().tolist()}))
    finally:
        dist.destroy_process_group()


class TinyNet(nn.Module):
    """A fixed random 3x3 conv: varied, mirror-asymmetric predictions at any size."""

    def __init__(self, num_classes=19, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.copy_(torch.randn(num_classes, generator=generator))

    def forward(self, x):
        return self.conv(x)


def _tiny_evaluate(root, **kwargs):
    dataset = CityscapesDataset(root, 'val', build_eval_transforms())
    return evaluate(TinyNet(), dataset, 19, progress=False, **kwargs)


def direct_evaluation(model, image_paths, label_paths, eval_size, scales, flip):
    """Evaluate from the files, step by step, as PaddleSeg's aug_inference describes it."""
    totals = [np.zeros(19, np.int64) for _ in range(3)]
    with torch.no_grad():
        for image_path, label_path in zip(image_paths, label_paths):
            rgb = cv2.imread(str(image_path))[:, :, ::-1].astype(np.float32)
            x = torch.from_numpy(((rgb / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).copy())[None]
            label = CITYSCAPES_ID_LUT[cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)]
            height, width = label.shape
            summed = torch.zeros(1, 19, height, width)
            passes = 0
            for scale in scales:
                size = (int(eval_size[1] * scale + 0.5), int(eval_size[0] * scale + 0.5))
                scaled = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
                for mirrored in ([False, True] if flip else [False]):
                    inp = torch.flip(scaled, dims=[3]) if mirrored else scaled
                    out = model(inp)
                    out = torch.flip(out, dims=[3]) if mirrored else out
                    summed += F.interpolate(out, size=(height, width), mode='bilinear',
                                            align_corners=False)
                    passes += 1
            pred = (summed / passes).argmax(dim=1)[0].numpy()
            for total, area in zip(totals, paddleseg_areas(pred, label, 19)):
                total += area
    return paddleseg_miou(*totals), totals


@pytest.mark.parametrize('eval_size, scales, flip', [
    (None, [1.0], False), ((96, 48), [1.0], False), ((96, 48), [0.75, 1.0, 1.25], True)])
def test_evaluate_equals_direct_computation(tmp_path, eval_size, scales, flip):
    written = make_cityscapes_like(tmp_path, 0, 3, size=(64, 128), seed=5)
    dataset = CityscapesDataset(tmp_path, 'val', build_eval_transforms())
    model = TinyNet()
    result = evaluate(model, dataset, 19, eval_size=eval_size, scales=scales, flip=flip,
                      progress=False)
    labels = [dataset.label_path(i) for i in range(len(dataset))]
    (iou, miou, accuracy), (intersect, _, _) = direct_evaluation(
        model, written['val'], labels, eval_size or (128, 64), scales, flip)
    # The same integer counts (checked below) divided in float64: round-off only.
    assert result['miou'] == pytest.approx(miou, rel=1e-12)
    assert result['pixel_accuracy'] == pytest.approx(accuracy, rel=1e-12)
    assert list(result['per_class_iou'].values()) == pytest.approx(iou.tolist(), rel=1e-12)
    np.testing.assert_array_equal(np.diag(result['confusion']), intersect)
    assert result['num_images'] == 3 and 0.0 < result['miou'] < 1.0
    assert list(result['per_class_iou'])[:2] == ['road', 'sidewalk']
    assert model.training  # evaluate() restores the mode it found


def test_evaluate_cli_writes_metrics_plot_and_test_server_pngs(tmp_path, monkeypatch, capsys):
    make_cityscapes_like(tmp_path / 'data', 0, 2, size=(64, 128), seed=6)
    torch.manual_seed(0)
    model = build_model('t', 19, dataset='cityscapes', input_size=[32, 64])
    checkpoint = tmp_path / 'model.pt'
    save_checkpoint(checkpoint, model)
    out, pngs = tmp_path / 'eval', tmp_path / 'server'
    argv = ['--config', str(CITY_CONFIG), '--checkpoint', str(checkpoint), '--output', str(out),
            '--set', f'dataset.root={tmp_path / "data"}', '--size', '64', '32', '--flip',
            '--num-workers', '0', '--no-progress', '--cityscapes-test-output', str(pngs)]
    assert evaluate_main(argv) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert cv2.imread(str(out / 'confusion_matrix.png')) is not None
    assert metrics['flip'] is True and metrics['size'] == [64, 32] and metrics['split'] == 'val'
    dataset = CityscapesDataset(tmp_path / 'data', 'val', build_eval_transforms())
    assert metrics['num_images'] == 2
    loaded = torch.load(checkpoint, weights_only=True)
    model.load_state_dict(loaded['model'])
    expected = evaluate(model, dataset, 19, eval_size=(64, 32), flip=True, progress=False)
    assert metrics['miou'] == pytest.approx(expected['miou'], rel=1e-12)  # same counts
    assert metrics['confusion'] == expected['confusion'].tolist()
    written = sorted(pngs.rglob('*.png'))
    assert [p.name for p in written] == ['frankfurt_000000_000019_leftImg8bit.png',
                                         'frankfurt_000001_000019_leftImg8bit.png']
    valid_ids = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    for path in written:
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert ids.shape == (64, 128) and set(np.unique(ids).tolist()) <= valid_ids
    # The official script agrees with metrics.json on these PNGs.
    module = _cityscapes_eval_module(pngs, monkeypatch)
    gts = sorted(str(p) for p in (tmp_path / 'data' / 'gtFine' / 'val').rglob('*labelIds.png'))
    official = module.evaluateImgLists([module.getPrediction(module.args, g) for g in gts], gts,
                                       module.args)
    for name, iou in metrics['per_class_iou'].items():
        score = official['classScores'][name]
        # Both float64 ratios of the same integer counts: round-off only.
        assert (iou == 0.0 and np.isnan(score)) or score == pytest.approx(iou, rel=1e-12)
    custom = REPO / 'training' / 'configs' / 'custom_finetune_example.yaml'
    assert evaluate_main(['--config', str(custom), '--checkpoint', str(checkpoint)]) == 2
    assert 'checkpoint has 19 classes' in capsys.readouterr().err
