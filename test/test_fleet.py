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
``liteseg bag-eval`` on several bags without Ray: merged figures, resume, bag lists, mIoU names.

Bags are small generated drives (``fleet_bags``); expected figures come from the single-bag
evaluation of one bag holding the good bags' frames together and from ``numpy.bincount``.
The Ray runs are in ``test_fleet_ray.py`` (ray is not in the torch-free requirement set).
"""

import json
import sys

from fleet_bags import (CallHook, drive_frames, IMAGE_TOPIC, LABEL_TOPIC, NUM_CLASSES, truncate,
                        write_drive)
from liteseg_ros.bags import fleet, fleet_bag
from liteseg_ros.bags.evaluation import evaluate_bag
from liteseg_ros.bags.report import format_summary
from liteseg_ros.cli import main as liteseg_main
from liteseg_ros.inference import Segmenter
from liteseg_ros.inference.metrics import ConfusionMatrix
import numpy as np
from onnx_models import onnx_model
import pytest

# Torch-free (ONNX model, rosbags, no Ray): runs on Python 3.10/3.12 too.
pytestmark = pytest.mark.lite

FRAMES = 4


@pytest.fixture(scope='module')
def drives(tmp_path_factory):
    """Return the three drives, the third truncated, and a bag of the good drives' frames."""
    root = tmp_path_factory.mktemp('fleet')
    model = onnx_model('t_128x256', tmp_path_factory)
    segmenter = Segmenter.from_file(model, threads=1)
    frames = [drive_frames(segmenter, seed, FRAMES) for seed in range(3)]
    bags = [write_drive(root / 'drives' / f'drive{i}', f) for i, f in enumerate(frames)]
    truncate(bags[2])
    together = write_drive(root / 'together', frames[0] + frames[1])
    return {'root': root, 'model': model, 'segmenter': segmenter, 'frames': frames,
            'bags': bags, 'together': together}


def topic_args(model):
    return ['--model', str(model), '--image-topic', IMAGE_TOPIC, '--label-topic', LABEL_TOPIC,
            '--threads', '1', '--no-progress']


def bincount_matrix(frames):
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for _, _, mask, label in frames:
        keep = label != 255
        matrix += np.bincount(label[keep].astype(np.int64) * NUM_CLASSES + mask[keep],
                              minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    return matrix


def check_fleet_summary(out, drives, resumed=0):
    """Check a fleet run over the three drives; return its summary."""
    summary = json.loads((out / 'summary.json').read_text())
    single = evaluate_bag(drives['together'], [IMAGE_TOPIC], drives['segmenter'],
                          [LABEL_TOPIC], progress=False, log=lambda text: None)
    assert summary['frames'] == single['frames'] == 2 * FRAMES
    assert summary['labelled_frames'] == 2 * FRAMES
    assert abs(summary['miou'] - single['miou']) <= 1e-9
    assert abs(summary['miou_present_classes'] - single['miou_present_classes']) <= 1e-9
    assert abs(summary['pixel_accuracy'] - single['pixel_accuracy']) <= 1e-9
    per_bag = [json.loads((out / f'drive{i}' / 'summary.json').read_text()) for i in range(2)]
    summed = np.add(per_bag[0]['confusion_matrix'], per_bag[1]['confusion_matrix'])
    np.testing.assert_array_equal(summary['confusion_matrix'], summed)
    np.testing.assert_array_equal(summed, bincount_matrix(drives['frames'][0]
                                                          + drives['frames'][1]))
    # Latency percentiles of all frames' samples, not an average of per-bag percentiles.
    samples = np.concatenate([np.load(out / f'drive{i}' / fleet_bag.SAMPLES_FILE)['latency_ms']
                              for i in range(2)])
    assert len(samples) == 2 * FRAMES
    assert summary['latency_ms']['p95'] == round(float(np.percentile(samples, 95)), 3)
    assert summary['bags'] == {'total': 3, 'ok': 2, 'failed': 1, 'not_done': 0,
                               'resumed': resumed}
    failed, = summary['failed_bags']
    assert failed['name'] == 'drive2' and 'drive2' in failed['error']
    rows = (out / 'bags.csv').read_text().splitlines()
    assert rows[0].startswith('name,bag,status,frames,')
    assert [r.split(',')[2] for r in rows[1:]] == ['ok', 'ok', 'failed']
    for key in ('miou', 'per_class_iou', 'pixel_accuracy', 'latency_ms', 'stages_ms', 'fps',
                'errors', 'topics', 'classes_present', 'miou_labels', 'interrupted'):
        assert key in summary, key
    for name in ('worst_frames.png', 'confusion_matrix.png'):
        assert (out / name).stat().st_size > 1000
    for i in range(2):
        assert {'summary.json', 'bag', 'contact_sheet.png', 'confusion_matrix.png',
                fleet_bag.RESULT_FILE} <= {p.name for p in (out / f'drive{i}').iterdir()}
    return summary


def test_fleet_in_process_merges_like_one_bag(drives, tmp_path, capsys):
    out = tmp_path / 'out'
    code = liteseg_main(['bag-eval', str(drives['root'] / 'drives' / 'drive*'), '--output',
                         str(out)] + topic_args(drives['model']))
    assert code == 1  # not every bag succeeded
    summary = check_fleet_summary(out, drives)
    assert summary['run']['mode'] == 'in-process'
    text = capsys.readouterr().out
    assert 'mIoU (PaddleSeg, all 19 classes)' in text and 'failed: BagError' in text
    # Again: the output is there, so it needs --resume or --overwrite.
    code = liteseg_main(['bag-eval', str(drives['bags'][0]), str(drives['bags'][1]),
                         '--output', str(out)] + topic_args(drives['model']))
    assert code == 1 and '--resume' in capsys.readouterr().err


class Interrupting:
    """A model loader whose Segmenter gets Ctrl-C in its ``at``-th call (counted overall)."""

    def __init__(self, at):
        self.at = at

    def __call__(self, request):
        def before(call):
            if call == self.at:
                raise KeyboardInterrupt

        return CallHook(request.load_segmenter(), before)


def interrupted_run(drives, out):
    """Run the three drives with Ctrl-C during the second bag; return the summary."""
    request = fleet_bag.FleetRequest([IMAGE_TOPIC], [LABEL_TOPIC],
                                     model=str(drives['model']), threads=1)
    lines = []
    summary = fleet.run_fleet(drives['bags'], out, request, progress=False, log=lines.append,
                              make_segmenter=Interrupting(FRAMES + 2))
    assert fleet.exit_code(summary) == 130
    assert summary['interrupted'] is True and any('interrupted' in line for line in lines)
    written = json.loads((out / 'summary.json').read_text())
    assert written['interrupted'] is True
    assert written['bags']['ok'] == 1 and written['frames'] == FRAMES
    assert written['not_done_bags'] == [str(b) for b in drives['bags'][1:]]
    assert (out / 'drive0' / fleet_bag.RESULT_FILE).is_file()
    assert not (out / 'drive1' / fleet_bag.RESULT_FILE).exists()
    return summary


def test_resume_after_interrupt_evaluates_only_the_missing_bags(drives, tmp_path, capsys):
    out = tmp_path / 'out'
    interrupted_run(drives, out)
    first = (out / 'drive0' / fleet_bag.RESULT_FILE).stat().st_mtime_ns
    code = liteseg_main(['bag-eval'] + [str(b) for b in drives['bags']] + [
        '--output', str(out), '--resume'] + topic_args(drives['model']))
    assert code == 1
    assert '1 of 3 bags have complete results; evaluating 2' in capsys.readouterr().out
    assert (out / 'drive0' / fleet_bag.RESULT_FILE).stat().st_mtime_ns == first
    summary = check_fleet_summary(out, drives, resumed=1)
    # This run's rates leave out drive0, evaluated before: drive1 is its one ok bag.
    assert summary['frames'] == 2 * FRAMES and summary['wall_s'] > 0
    # wall_s is written rounded to 1 ms: the rates agree to that (counting drive0: 2x).
    assert summary['wall_fps'] == pytest.approx(FRAMES / summary['wall_s'], rel=1e-3)
    assert summary['bags_per_min'] == pytest.approx(60 / summary['wall_s'], rel=1e-3)


def test_bag_lists_globs_and_folder_names(tmp_path):
    for name in ('a', 'b', 'c'):
        (tmp_path / 'bags' / name).mkdir(parents=True)
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'a.mcap').write_bytes(b'')
    listing = tmp_path / 'bags.txt'
    listing.write_text('# drives of the week\nbags/b\n\nother/a.mcap  # a bare file\n')
    bags = fleet.expand_bags([str(tmp_path / 'bags' / '[ab]'), str(listing)])
    assert bags == [tmp_path / 'bags' / 'a', tmp_path / 'bags' / 'b',
                    tmp_path / 'other' / 'a.mcap']
    names = fleet.bag_names(bags)
    assert names[1] == 'b'
    assert names[0].startswith('a-') and names[2].startswith('a-') and names[0] != names[2]
    assert fleet.bag_names([bags[2], bags[0]]) == [names[2], names[0]]  # order-independent
    with pytest.raises(fleet_bag.FleetError, match='no bag matches'):
        fleet.expand_bags([str(tmp_path / 'nothing*')])
    (tmp_path / 'empty.txt').write_text('# none\n')
    with pytest.raises(fleet_bag.FleetError, match='names no bag'):
        fleet.expand_bags([str(tmp_path / 'empty.txt')])


def test_ray_missing_is_one_line(drives, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'ray', None)  # import ray raises ImportError
    code = liteseg_main(['bag-eval', str(drives['bags'][0]), '--ray', '--output',
                         str(tmp_path / 'o')] + topic_args(drives['model']))
    assert code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err
    assert 'pip install -r requirements-fleet.txt' in err
    assert not (tmp_path / 'o').exists()


def test_absent_classes_are_named_and_shown_as_na(drives, tmp_path):
    # 7 of 19 classes occur, each with IoU 24/26 = 0.923: PaddleSeg's mIoU is 34.0.
    matrix = ConfusionMatrix(NUM_CLASSES)
    for c in range(7):
        matrix.matrix[c, c] = 24
        matrix.matrix[c, (c + 1) % 7] = 1
    assert matrix.miou() == pytest.approx(7 * 12 / 13 / 19)
    assert matrix.miou(skip_empty=True) == pytest.approx(12 / 13)
    assert matrix.miou_label() == 'mIoU (PaddleSeg, all 19 classes)'
    assert matrix.miou_label(skip_empty=True) == 'mIoU (present classes, 7 of 19)'
    from liteseg_ros.bags.report import accuracy

    names = list(drives['segmenter'].class_names)
    summary = {'mode': 'offline', 'bag': 'b', 'storage': 'mcap', 'model': 'm',
               'backend': 'onnxruntime', 'device': 'CPU', 'upsample': 'nearest', 'batch': 1,
               'interrupted': False, 'read_error': None, 'frames': 1, 'image_messages': 1,
               'fps': 1.0, 'wall_fps': 1.0, 'wall_s': 1.0, 'latency_ms': {},
               'stages_ms': {}, 'labelled_frames': 1, 'class_names': names, 'topics': {},
               'errors': {}, 'error_examples': []}
    summary['latency_ms'] = {k: 1.0 for k in ('p50', 'p95', 'p99', 'mean', 'max')}
    summary['stages_ms'] = {s: summary['latency_ms'] for s in
                            ('read', 'decode', 'preprocess', 'infer', 'postprocess',
                             'segment')}
    summary.update(accuracy(matrix, names))
    assert summary['classes_absent'] == names[7:]
    text = format_summary(summary)
    assert 'mIoU (PaddleSeg, all 19 classes)   34.01%' in text
    assert 'mIoU (present classes, 7 of 19)    92.31%' in text
    assert text.count('n/a  (absent)') == 12
    assert f'{names[0]:<13}   92.31%' in text


def test_training_evaluate_names_both_mious_and_shows_absent_classes(capsys):
    torch = pytest.importorskip('torch')
    from training.evaluate import evaluate, format_table

    class Echo(torch.nn.Module):
        """Predicts the class id written in channel 0 of the image."""

        def forward(self, x):
            ids = x[:, 0].round().long()
            return torch.nn.functional.one_hot(ids, NUM_CLASSES).permute(0, 3, 1, 2).float()

    rng = np.random.default_rng(3)
    dataset = []
    for _ in range(3):
        label = rng.integers(0, 7, (16, 24))  # 7 of 19 classes occur
        pred = np.where(rng.random(label.shape) < 0.95, label, (label + 1) % 7)
        image = torch.from_numpy(np.stack([pred] * 3).astype(np.float32))
        dataset.append((image, torch.from_numpy(label)))
    result = evaluate(Echo(), dataset, NUM_CLASSES, progress=False)
    matrix = ConfusionMatrix(NUM_CLASSES)
    for image, label in dataset:
        matrix.update(image[0].numpy().astype(np.int64), label.numpy())
    assert result['miou'] == pytest.approx(matrix.miou(), rel=1e-12)
    assert result['miou_present_classes'] == pytest.approx(matrix.miou(skip_empty=True),
                                                           rel=1e-12)
    assert result['miou'] == pytest.approx(result['miou_present_classes'] * 7 / 19, rel=1e-12)
    assert len(result['classes_present']) == 7
    table = format_table(result)
    lines = {line.rsplit(' ', 1)[0].strip(): line.rsplit(' ', 1)[1] for line in
             table.splitlines()[1:] if ' ' in line.strip()}
    assert lines['mIoU (PaddleSeg, all 19 classes)'] == f"{100 * result['miou']:.2f}"
    assert lines['mIoU (present classes, 7 of 19)'] == \
        f"{100 * result['miou_present_classes']:.2f}"
    assert table.count(' n/a') == 12


def test_bag_damaged_mid_way_fails_and_stays_out_of_the_figures(drives, tmp_path):
    frames = drives['frames']
    bags = [write_drive(tmp_path / 'good', frames[0]),
            write_drive(tmp_path / 'damaged', frames[1] * 5, storage='sqlite3')]
    db3 = next(bags[1].glob('*.db3'))
    data = bytearray(db3.read_bytes())
    data[len(data) // 2:len(data) // 2 + 5000] = b'\x13' * 5000  # overwrite pages mid-file
    db3.write_bytes(data)
    request = fleet_bag.FleetRequest([IMAGE_TOPIC], [LABEL_TOPIC],
                                     model=str(drives['model']), threads=1)
    summary = fleet.run_fleet(bags, tmp_path / 'out', request, progress=False,
                              log=lambda text: None)
    assert fleet.exit_code(summary) == 1
    damaged = json.loads((tmp_path / 'out' / 'damaged' / fleet_bag.RESULT_FILE).read_text())
    assert damaged['status'] == 'failed' and 'cannot be read to the end' in damaged['error']
    assert 0 < damaged['frames'] < 5 * FRAMES  # partial results, kept in its folder only
    assert summary['frames'] == FRAMES
    assert summary['confusion_matrix'] == bincount_matrix(frames[0]).tolist()


def test_worker_defaults_for_cpu_and_gpu_clusters():
    from liteseg_ros.bags import fleet_ray

    class FakeRay:

        def __init__(self, resources):
            self.resources = resources

        def cluster_resources(self):
            return self.resources

    request = fleet_bag.FleetRequest([IMAGE_TOPIC], model='m.onnx')
    cpu = FakeRay({'CPU': 16.0})
    workers, shaped, options = fleet_ray.worker_shape(cpu, request, 0)
    assert (workers, shaped.threads, options) == (16, 1, {'num_cpus': 1})
    threads4 = fleet_bag.FleetRequest([IMAGE_TOPIC], model='m.onnx', threads=4)
    assert fleet_ray.worker_shape(cpu, threads4, 0)[0] == 4
    assert fleet_ray.worker_shape(cpu, request, 3)[0] == 3
    gpu = FakeRay({'CPU': 32.0, 'GPU': 2.0})
    workers, shaped, options = fleet_ray.worker_shape(gpu, request, 0)
    assert (workers, options['num_gpus']) == (2, 1.0)
    assert fleet_ray.worker_shape(gpu, request, 4)[2]['num_gpus'] == 0.5
    # Ray places a fraction on one GPU: 3 workers on 2 GPUs ask 1/2, so 2 share one GPU.
    assert fleet_ray.worker_shape(gpu, request, 3)[2]['num_gpus'] == 0.5
    assert fleet_ray.worker_shape(gpu, request, 5)[2]['num_gpus'] == 1 / 3
    assert fleet_ray.worker_shape(gpu, request, 1)[2]['num_gpus'] == 1.0
    on_cpu = fleet_bag.FleetRequest([IMAGE_TOPIC], model='m.onnx', device='cpu')
    assert 'num_gpus' not in fleet_ray.worker_shape(gpu, on_cpu, 0)[2]
    with pytest.raises(fleet_bag.FleetError, match='no GPU'):
        fleet_ray.worker_shape(cpu, fleet_bag.FleetRequest([IMAGE_TOPIC], device='cuda'), 0)
