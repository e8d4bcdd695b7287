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
A CamVid-trained checkpoint through the deployment path: int8, drives as a fleet, pictures.

    python benchmarks/camvid_deploy.py --data data/camvid_480x360 --checkpoint best.pt \
        [--work .cache/camvid_deploy] [--threads 2] [--rounds 8]

1. ``training.evaluate`` on the test split: the reference mIoU;
2. ``training.export`` fp32, and int8 calibrated on the train images with the accuracy gate on
   val (``--calibration CONFIG:train --gate CONFIG:val``);
3. ``liteseg dataset-to-bag --name-prefix`` writes each drive of the test split as a rosbag
   (of CamVid's four drives 0001TP, 0006R0, 0016E5 and Seq05VD, SegNet's test split holds
   0001TP and Seq05VD; the others are train and val), and ``liteseg bag-eval --ray local``
   evaluates them as a fleet with the checkpoint (torch), the fp32 and the int8 ONNX: the
   checkpoint's fleet mIoU must equal the reference (1e-6);
4. frame-to-mask and model-only time of fp32 and int8 ONNX Runtime on a real test frame,
   interleaved rounds, and their ratio;
5. a contact sheet of real test frames (input, colour mask, overlay, drivable area, label):
   ``--sheet`` (default docs/images/camvid_test_frames.png).

Prints a markdown summary and writes ``results.json`` in ``--work``.
"""

import argparse
import json
from pathlib import Path
import subprocess
import sys

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from liteseg_ros.inference.bench import cpu_info, machine_description  # noqa: E402
from liteseg_ros.inference.model_files import onnx_io  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402

CONFIG = REPO / 'training' / 'configs' / 'pp_liteseg_t_camvid_cpu_480x360.yaml'
SEQUENCES = ('0001TP', '0006R0', '0016E5', 'Seq05VD')
THUMB_WIDTH = 240  # contact-sheet pictures: a README-sized file


def log(message):
    print(f'[camvid-deploy] {message}', file=sys.stderr, flush=True)


def run(cmd, log_path):
    """Run ``cmd`` with its output in ``log_path``; raise naming the log on failure."""
    with open(log_path, 'w') as out:
        result = subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO)
    if result.returncode:
        raise RuntimeError(f'{" ".join(map(str, cmd[:4]))} ... failed ({result.returncode}); '
                           f'see {log_path}')


def data_config(work, data):
    """Write a config inheriting the CamVid CPU config with ``data`` as dataset root."""
    path = work / 'config.yaml'
    path.write_text(f'_base_: {CONFIG}\ndataset:\n  root: {data.resolve()}\n')
    return path


def reference_miou(config, checkpoint, work):
    out = work / 'evaluate_test'
    if not (out / 'metrics.json').is_file():
        run([sys.executable, '-m', 'training.evaluate', '--config', config, '--checkpoint',
             checkpoint, '--split', 'test', '--output', out, '--no-progress',
             '--num-workers', '0'], work / 'evaluate_test.log')
    return json.loads((out / 'metrics.json').read_text())


def export_models(config, checkpoint, work):
    models = {'fp32': work / 'fp32.onnx', 'int8': work / 'int8.onnx'}
    if not models['fp32'].is_file():
        run([sys.executable, '-m', 'training.export', checkpoint, '--onnx', models['fp32']],
            work / 'export_fp32.log')
    if not models['int8'].is_file():
        run([sys.executable, '-m', 'training.export', checkpoint, '--onnx', models['int8'],
             '--precision', 'int8', '--calibration', f'{config}:train', '--gate',
             f'{config}:val'], work / 'export_int8.log')
    return models


def write_bags(data, work):
    bags = []
    for sequence in SEQUENCES:
        bag = work / 'bags' / sequence
        if not bag.exists():
            bag.parent.mkdir(parents=True, exist_ok=True)
            try:
                run([sys.executable, '-m', 'liteseg_ros.cli', 'dataset-to-bag', bag,
                     '--dataset', 'camvid', '--root', data, '--split', 'test',
                     '--name-prefix', sequence, '--no-progress'],
                    work / f'bag_{sequence}.log')
            except RuntimeError:
                if 'none of the' in (work / f'bag_{sequence}.log').read_text():
                    log(f'{sequence}: no test frames (a train/val drive)')
                    continue
                raise
        bags.append(bag)
    return bags


def fleet(bags, model, backend, work, name, threads):
    out = work / f'fleet_{name}'
    if not (out / 'summary.json').is_file():
        run([sys.executable, '-m', 'liteseg_ros.cli', 'bag-eval', *bags, '--model', model,
             '--backend', backend, '--ray', 'local', '--workers', '2', '--threads',
             str(max(1, threads // 2)), '--output', out, '--outputs', 'none',
             '--no-progress', '--contact-sheet', '0'], work / f'fleet_{name}.log')
    return json.loads((out / 'summary.json').read_text())


def test_frames(data, count=4):
    """Return [(name, rgb, label)] of ``count`` test frames spread over the test drives."""
    from liteseg_ros.dataset_files import camvid_files, read_image, read_label

    pairs = camvid_files(data, 'test.txt')
    chosen = [pairs[i * len(pairs) // count + len(pairs) // (2 * count)] for i in range(count)]
    return [(image.stem, read_image(image), read_label(label)) for image, label in chosen]


def timing(models, frame, threads, rounds, per_round=3):
    """Median model-only and frame-to-mask ms of each ONNX model, interleaved rounds."""
    from int8_cpu import interleaved_latency
    from liteseg_ros.inference import Segmenter

    segmenters = {name: Segmenter.from_file(path, 'onnxruntime', device='cpu', threads=threads)
                  for name, path in models.items()}
    return interleaved_latency(segmenters, rounds, per_round, None, frame)


def _thumb(picture, smooth, width=THUMB_WIDTH):
    import cv2

    height = picture.shape[0] * width // picture.shape[1]
    return cv2.resize(picture, (width, height),
                      interpolation=cv2.INTER_AREA if smooth else cv2.INTER_NEAREST)


def contact_sheet(checkpoint, frames, path):
    """Write input / colour / overlay / drivable area / label of real frames to ``path``."""
    from liteseg_ros.bags.report import write_contact_sheet
    from liteseg_ros.inference import Segmenter
    from liteseg_ros.inference.outputs import OutputRenderer
    from liteseg_ros.model import load_checkpoint

    config = load_checkpoint(checkpoint)['config']
    segmenter = Segmenter.from_file(checkpoint, 'torch', device='cpu')
    renderer = OutputRenderer(config['class_names'], config['palette'],
                              drivable_classes=('road',))
    thumbs = []
    for name, rgb, label in frames:
        mask = segmenter([rgb])[0].mask
        out = renderer.render(('color', 'overlay', 'drivable_area'), rgb, mask)
        drivable = np.repeat(out['drivable_area'][..., None], 3, axis=2)
        truth = renderer.colorize(np.where(label == 255, 0, label).astype(np.uint8))
        truth[label == 255] = 0  # void in black
        pictures = [rgb, out['color'], out['overlay'], drivable, truth]
        thumbs.append((name, *(_thumb(p, smooth=i in (0, 2)) for i, p in enumerate(pictures))))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_contact_sheet(path, thumbs, rows=('input', 'mask', 'overlay', 'drivable', 'label'))


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', required=True, type=Path,
                        help='CamVid prepared by python -m training.prepare_data camvid')
    parser.add_argument('--checkpoint', required=True, type=Path)
    parser.add_argument('--work', type=Path, default=REPO / '.cache' / 'camvid_deploy')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=8, help='interleaved timing rounds')
    parser.add_argument('--sheet', type=Path,
                        default=REPO / 'docs' / 'images' / 'camvid_test_frames.png')
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.data.resolve()
    config = data_config(args.work, data)

    reference = reference_miou(config, args.checkpoint, args.work)
    models = export_models(config, args.checkpoint, args.work)
    bags = write_bags(data, args.work)
    fleets = {'checkpoint (torch)': fleet(bags, args.checkpoint, 'torch', args.work, 'pt',
                                          args.threads),
              'fp32 ONNX': fleet(bags, models['fp32'], 'onnxruntime', args.work, 'fp32',
                                 args.threads),
              'int8 ONNX': fleet(bags, models['int8'], 'onnxruntime', args.work, 'int8',
                                 args.threads)}
    frames = test_frames(data)
    times = timing(models, frames[0][1], args.threads, args.rounds)
    contact_sheet(args.checkpoint, frames, args.sheet)
    io = onnx_io(onnx.load(str(models['int8'])))

    cpu = f"{machine_description()}, flags {' '.join(cpu_info()[2])}"
    difference = abs(fleets['checkpoint (torch)']['miou'] - reference['miou'])
    lines = [f'CPU: {cpu}; ONNX Runtime {args.threads} threads', '',
             f"training.evaluate, test split ({reference['num_images']} frames): mIoU "
             f"{100 * reference['miou']:.4f}", '',
             '| model | fleet bags | frames | fleet test mIoU | vs training.evaluate |',
             '|---|---|---|---|---|']
    for name, summary in fleets.items():
        lines.append(f"| {name} | {len(summary['per_bag'])} | {summary['frames']} | "
                     f"{100 * summary['miou']:.4f} | "
                     f"{100 * (summary['miou'] - reference['miou']):+.4f} points |")
    lines += ['', f'|checkpoint fleet mIoU - training.evaluate| = {difference:.2e}', '',
              f"int8 gate on val: argmax agreement {100 * io['gate']['agreement']:.2f} % over "
              f"{io['gate']['frames']} frames; scheme {io['int8_scheme']}; float nodes "
              f"{len(io['float_nodes'])}", '',
              f'| ONNX Runtime, frame {frames[0][1].shape[1]}x{frames[0][1].shape[0]} | '
              'model only (ms) | frame to mask (ms) |', '|---|---|---|']
    for name, t in times.items():
        lines.append(f"| {name} | {t['model_ms']:.1f} | {t['frame_ms']:.1f} |")
    lines.append(f"| int8 / fp32 | {times['int8']['model_ms'] / times['fp32']['model_ms']:.2f}"
                 f" | {times['int8']['frame_ms'] / times['fp32']['frame_ms']:.2f} |")
    text = '\n'.join(lines)
    (args.work / 'results.json').write_text(json.dumps(
        {'cpu': cpu, 'reference': {k: reference[k] for k in ('miou', 'per_class_iou')},
         'fleets': {k: {'miou': v['miou'], 'frames': v['frames']} for k, v in fleets.items()},
         'timing': times, 'int8_gate': io['gate']}, indent=1))
    print(text)
    log(f'wrote {args.sheet} and {args.work / "results.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
