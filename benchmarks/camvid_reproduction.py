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
Our trainer against PaddleSeg 2.8's own trainer on real CamVid, same config, several seeds.

    python benchmarks/camvid_reproduction.py --data data/camvid_480x360 \
        [--ours-seeds 0 1 2] [--paddle-seeds 0 1] [--jobs 2] [--work .cache/camvid_repro]

``--data`` is CamVid prepared by ``python -m training.prepare_data camvid``. The config is
``training/configs/pp_liteseg_t_camvid_cpu_480x360.yaml`` (``--config``). Steps, each skipped
when its result is already in ``--work`` (so an interrupted run continues):

1. PaddleSeg's trainer venv (paddlepaddle 2.6.2 + paddleseg 2.8.0) is built under ``--work``
   unless ``--paddle-python`` names one;
2. both trainers train every seed, ``--jobs`` runs at a time, each with cores / jobs threads
   (``benchmarks/paddleseg_trainer.py train`` runs PaddleSeg's);
3. the best-on-val checkpoint of every run is evaluated on the test split by
   ``training.evaluate``; PaddleSeg's are converted with ``training.convert_paddle`` first and
   also evaluated by PaddleSeg's own ``val`` (evaluation parity, reported to 1e-4);
4. ``--speed-iters`` iterations of each trainer, interleaved, alone on the machine, give the
   iterations/s of both;
5. prints the markdown tables (per seed, mean, per class, speed) and writes ``results.json``
   and the loss / val mIoU curves of both (``--curves``, default
   docs/images/camvid_reproduction.png).
"""

import argparse
import concurrent.futures
import csv
import json
import os
from pathlib import Path
import re
import statistics
import subprocess
import sys
import time

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from liteseg_ros.inference.bench import cpu_info, machine_description  # noqa: E402
from training.config import load_config  # noqa: E402

CONFIG = REPO / 'training' / 'configs' / 'pp_liteseg_t_camvid_cpu_480x360.yaml'
PADDLE_SCRIPT = REPO / 'benchmarks' / 'paddleseg_trainer.py'
PADDLE_REQUIREMENTS = ('paddlepaddle==2.6.2', 'paddleseg==2.8.0', 'numpy<2', 'pandas<3')
PADDLE_TRAIN = re.compile(r'\[TRAIN\] epoch: \d+, iter: (\d+)/\d+, loss: ([\d.]+), lr: [\d.]+, '
                          r'batch_cost: ([\d.]+)')
PADDLE_EVAL = re.compile(r'\[EVAL\] #Images: \d+ mIoU: ([\d.]+)')
PADDLE_SAVED = re.compile(r'saved at iter (\d+)')


def log(message):
    print(f'[camvid] {message}', file=sys.stderr, flush=True)


def run(cmd, log_path=None, threads=None):
    """Run ``cmd`` (output to ``log_path`` when given); raise naming the log on failure."""
    env = dict(os.environ)
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    for key in ('PYTHONPATH', 'VIRTUAL_ENV'):
        env.pop(key, None)
    if log_path is None:
        subprocess.run(cmd, check=True, env=env, cwd=REPO)
        return
    with open(log_path, 'w') as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if result.returncode:
        raise RuntimeError(f'{" ".join(map(str, cmd[:4]))} ... failed ({result.returncode}); '
                           f'see {log_path}')


def paddle_python(work, given):
    """Return PaddleSeg's trainer Python, building its venv under ``work`` when needed."""
    if given:
        return Path(given)
    venv = work / 'paddle_venv'
    python = venv / 'bin' / 'python'
    stamp = venv / '.requirements'
    if not (python.exists() and stamp.exists()
            and stamp.read_text() == '\n'.join(PADDLE_REQUIREMENTS)):
        log(f'building {venv} ({", ".join(PADDLE_REQUIREMENTS)})')
        run([sys.executable, '-m', 'venv', str(venv)])
        run([str(python), '-m', 'pip', 'install', '-q', *PADDLE_REQUIREMENTS])
        stamp.write_text('\n'.join(PADDLE_REQUIREMENTS))
    return python


class Runs:
    """The folders and commands of every training run under ``work``."""

    def __init__(self, work, config, config_json, paddle_py):
        self.work, self.config, self.config_json, self.paddle_py = (work, config, config_json,
                                                                    paddle_py)
        self.iters = config['train']['iters']

    def folder(self, trainer, seed):
        return self.work / f'{trainer}_seed{seed}'

    def done(self, trainer, seed):
        folder = self.folder(trainer, seed)
        if trainer == 'ours':
            return (folder / 'done').is_file()
        return (folder / f'iter_{self.iters}' / 'model.pdparams').is_file()

    def train(self, trainer, seed, threads, config_path):
        folder = self.folder(trainer, seed)
        log_path = self.work / f'{trainer}_seed{seed}.log'
        start = time.monotonic()
        if trainer == 'ours':
            run([sys.executable, '-m', 'training.train', '--config', str(config_path),
                 '--override', f'dataset.root={self.config["dataset"]["root"]}',
                 '--override', f'train.seed={seed}', '--override', 'train.num_workers=1',
                 '--output-dir', str(folder), '--no-progress'], log_path, threads)
            (folder / 'done').write_text('')
        else:
            run([str(self.paddle_py), str(PADDLE_SCRIPT), 'train', str(self.config_json),
                 str(folder), '--seed', str(seed)], log_path, threads)
        log(f'{trainer} seed {seed}: trained in {(time.monotonic() - start) / 60:.1f} min')


def train_all(runs, seeds, jobs, config_path):
    todo = [(t, s) for t in ('paddle', 'ours') for s in seeds[t] if not runs.done(t, s)]
    if not todo:
        return
    threads = max(1, (os.cpu_count() or 2) // jobs)
    log(f'training {len(todo)} run(s), {jobs} at a time, {threads} thread(s) each: {todo}')
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(runs.train, t, s, threads, config_path) for t, s in todo]
        for future in concurrent.futures.as_completed(futures):
            future.result()


def evaluate_ours(config_path, checkpoint, out_dir, data_root):
    """Return training.evaluate's test metrics of ``checkpoint`` (cached in out_dir)."""
    metrics = out_dir / 'metrics.json'
    if not metrics.is_file():
        run([sys.executable, '-m', 'training.evaluate', '--config', str(config_path),
             '--checkpoint', str(checkpoint), '--split', 'test', '--output', str(out_dir),
             '--set', f'dataset.root={data_root}', '--no-progress', '--num-workers', '0'],
            out_dir.with_suffix('.log') if out_dir.parent.exists() else None)
    return json.loads(metrics.read_text())


def evaluate_run(runs, trainer, seed, config_path):
    folder = runs.folder(trainer, seed)
    root = runs.config['dataset']['root']
    if trainer == 'ours':
        return {'test': evaluate_ours(config_path, folder / 'best.pt', folder / 'eval_test',
                                      root)}
    pdparams = folder / 'best_model' / 'model.pdparams'
    converted = folder / 'best_model.pt'
    if not converted.is_file():
        run([sys.executable, '-m', 'training.convert_paddle', str(pdparams), str(converted),
             '--variant', runs.config['model']['variant'], '--num-classes',
             str(runs.config['model']['num_classes']), '--dataset', 'camvid'],
            folder / 'convert.log')
    ours = evaluate_ours(config_path, converted, folder / 'eval_test', root)
    own = folder / 'paddleseg_val_test.json'
    if not own.is_file():
        run([str(runs.paddle_py), str(PADDLE_SCRIPT), 'val', str(runs.config_json),
             str(pdparams), str(own), '--split', 'test'], folder / 'paddleseg_val.log')
    return {'test': ours, 'paddleseg_val': json.loads(own.read_text())}


def curves(runs, trainer, seed):
    """Return {'loss': [(iter, loss)], 'val': [(iter, mIoU)], 'best_iter': int}."""
    folder = runs.folder(trainer, seed)
    if trainer == 'ours':
        with open(folder / 'train_log.csv') as f:
            rows = list(csv.DictReader(f))
        loss = [(int(r['iteration']), float(r['loss'])) for r in rows if r['loss']]
        val = [(int(r['iteration']), float(r['miou'])) for r in rows if r.get('miou')]
        best = max(val, key=lambda x: x[1])[0] if val else None
        return {'loss': loss, 'val': val, 'best_iter': best}
    text = (runs.work / f'paddle_seed{seed}.log').read_text()
    loss, val, it = [], [], 0
    for line in text.splitlines():
        if m := PADDLE_TRAIN.search(line):
            it = int(m.group(1))
            loss.append((it, float(m.group(2))))
        elif m := PADDLE_EVAL.search(line):
            val.append((it, float(m.group(1))))
    saved = PADDLE_SAVED.findall(text)
    return {'loss': loss, 'val': val, 'best_iter': int(saved[-1]) if saved else None}


def measure_speed(runs, config_path, iters, rounds):
    """Seconds per iteration of each trainer, alone and interleaved: {trainer: [median...]}."""
    threads = os.cpu_count() or 2
    times = {'ours': [], 'paddle': []}
    speed_dir = runs.work / 'speed'
    speed_dir.mkdir(exist_ok=True)
    short = dict(runs.config)
    short['train'] = {**short['train'], 'iters': iters, 'eval_every': 10 ** 9,
                      'log_every': 1}
    short_json = speed_dir / 'config.json'
    short_json.write_text(json.dumps(short))
    for r in range(rounds):
        for trainer in ('ours', 'paddle'):
            out = speed_dir / f'{trainer}_{r}'
            log_path = speed_dir / f'{trainer}_{r}.log'
            if trainer == 'ours':
                run([sys.executable, '-m', 'training.train', '--config', str(config_path),
                     '--override', f'dataset.root={runs.config["dataset"]["root"]}',
                     '--override', f'train.iters={iters}', '--override', 'train.log_every=1',
                     '--override', f'train.eval_every={10 ** 9}', '--override',
                     'train.num_workers=1', '--output-dir', str(out), '--no-progress'],
                    log_path, threads)
                with open(out / 'train_log.csv') as f:
                    per_iter = [1 / float(row['it_s']) for row in csv.DictReader(f)]
            else:
                run([str(runs.paddle_py), str(PADDLE_SCRIPT), 'train', str(short_json),
                     str(out), '--seed', '0', '--no-eval'], log_path, threads)
                per_iter = [float(m.group(3)) for m in PADDLE_TRAIN.finditer(
                    log_path.read_text())]
            # the first iterations pay for allocation and oneDNN kernel choice
            times[trainer].append(statistics.median(per_iter[2:] or per_iter))
            log(f'speed round {r}: {trainer} {times[trainer][-1]:.3f} s/iteration')
    return times


def plot_curves(all_curves, path, title):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(12, 4.2))
    colours = {'ours': 'tab:blue', 'paddle': 'tab:orange'}
    names = {'ours': 'liteseg training', 'paddle': 'PaddleSeg 2.8 trainer'}
    for (trainer, seed), c in sorted(all_curves.items()):
        style = {'color': colours[trainer], 'alpha': 0.85, 'linewidth': 1.2,
                 'linestyle': ['-', '--', ':', '-.'][seed % 4],
                 'label': f'{names[trainer]}, seed {seed}'}
        ax_loss.plot(*zip(*c['loss']), **style)
        if c['val']:
            ax_val.plot(*zip(*[(i, 100 * v) for i, v in c['val']]), marker='o', **style)
    ax_loss.set(xlabel='iteration', ylabel='training loss (3 OHEM heads)', title='loss')
    ax_val.set(xlabel='iteration', ylabel='val mIoU (%)', title='validation mIoU')
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    ax_val.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results, class_names, speed, cpu):
    """Return the markdown tables of ``results``."""
    lines = [f'CPU: {cpu}', '', '| trainer | seed | best val iter | test mIoU (training.evaluate) '
             "| test mIoU (PaddleSeg's val) |", '|---|---|---|---|---|']
    means = {}
    for trainer in ('paddle', 'ours'):
        mious = []
        for seed, r in sorted(results[trainer].items()):
            miou = 100 * r['test']['miou']
            mious.append(miou)
            own = (f"{100 * r['paddleseg_val']['miou']:.2f}" if 'paddleseg_val' in r else '')
            lines.append(f"| {trainer} | {seed} | {r['curves']['best_iter']} | {miou:.2f} | "
                         f'{own} |')
        if mious:
            means[trainer] = mious
            spread = f' (range {min(mious):.2f}-{max(mious):.2f})' if len(mious) > 1 else ''
            lines.append(f'| **{trainer} mean** | {len(mious)} seeds | | '
                         f'**{statistics.mean(mious):.2f}**{spread} | |')
    lines += ['', '| class | ' + ' | '.join(f'{t} mean IoU' for t in means) + ' |',
              '|---|' + '---|' * len(means)]
    for name in class_names:
        cells = [statistics.mean(100 * r['test']['per_class_iou'][name]
                                 for r in results[t].values()) for t in means]
        lines.append(f'| {name} | ' + ' | '.join(f'{c:.2f}' for c in cells) + ' |')
    parity = [abs(r['test']['miou'] - r['paddleseg_val']['miou'])
              for r in results['paddle'].values() if 'paddleseg_val' in r]
    if parity:
        lines += ['', f'Evaluation parity (PaddleSeg checkpoints, test split): max |mIoU '
                      f'training.evaluate - PaddleSeg val| = {max(parity):.2e}']
    if speed:
        ours, paddle = (statistics.median(speed[t]) for t in ('ours', 'paddle'))
        lines += ['', '| trainer | s/iteration (median of rounds) | iterations/s |',
                  '|---|---|---|',
                  f'| ours | {ours:.3f} | {1 / ours:.2f} |',
                  f'| PaddleSeg 2.8 (paddle 2.6.2) | {paddle:.3f} | {1 / paddle:.2f} |',
                  f'| ratio PaddleSeg / ours | {paddle / ours:.2f} | |']
    return '\n'.join(lines)


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', required=True, type=Path,
                        help='CamVid prepared by python -m training.prepare_data camvid')
    parser.add_argument('--config', type=Path, default=CONFIG)
    parser.add_argument('--work', type=Path, default=REPO / '.cache' / 'camvid_repro')
    parser.add_argument('--ours-seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--paddle-seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--jobs', type=int, default=2, help='training runs at a time')
    parser.add_argument('--paddle-python', help="PaddleSeg trainer venv's python "
                        '(default: build one under --work)')
    parser.add_argument('--speed-iters', type=int, default=12,
                        help='iterations per speed run (0: no speed measurement)')
    parser.add_argument('--speed-rounds', type=int, default=2)
    parser.add_argument('--curves', type=Path,
                        default=REPO / 'docs' / 'images' / 'camvid_reproduction.png')
    args = parser.parse_args(argv)

    args.work.mkdir(parents=True, exist_ok=True)
    data_root = str(args.data.resolve())
    config = load_config(args.config, [f'dataset.root={data_root}'])
    config_json = args.work / 'config.json'
    config_json.write_text(json.dumps(config, indent=1))
    runs = Runs(args.work, config, config_json, paddle_python(args.work, args.paddle_python))
    seeds = {'ours': args.ours_seeds, 'paddle': args.paddle_seeds}
    train_all(runs, seeds, args.jobs, args.config)

    results = {'ours': {}, 'paddle': {}}
    all_curves = {}
    for trainer in ('paddle', 'ours'):
        for seed in seeds[trainer]:
            result = evaluate_run(runs, trainer, seed, args.config)
            result['curves'] = curves(runs, trainer, seed)
            all_curves[(trainer, seed)] = result['curves']
            results[trainer][seed] = result
    speed_file = args.work / 'speed.json'
    if args.speed_iters and not speed_file.is_file():
        speed_file.write_text(json.dumps(measure_speed(runs, args.config, args.speed_iters,
                                                       args.speed_rounds)))
    speed = json.loads(speed_file.read_text()) if speed_file.is_file() else None
    cpu = f"{machine_description()}, flags {' '.join(cpu_info()[2])}"
    plot_curves(all_curves, args.curves,
                f"PP-LiteSeg-T on CamVid 480x360 from scratch, {config['train']['iters']} "
                f"iterations, batch {config['train']['batch_size']}, same config and data\n"
                f'{cpu}')
    class_names = list(next(iter(results['ours'].values()))['test']['per_class_iou'])
    text = report(results, class_names, speed, cpu)
    (args.work / 'results.json').write_text(json.dumps(
        {'cpu': cpu, 'speed': speed,
         'results': {t: {str(s): r for s, r in rs.items()}
                     for t, rs in results.items()}}, indent=1, default=str))
    print(text)
    log(f'wrote {args.curves} and {args.work / "results.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
