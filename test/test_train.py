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
Training loop, optimizer and schedule (training.train, training.schedule).

Runs on the synthetic Cityscapes-layout dataset of ``training.synthetic_data`` with a config
that inherits the PP-LiteSeg-T Cityscapes config and shrinks the crop, batch and min_kept:

- 50 iterations lower the loss clearly and beat an untrained model's mIoU;
- 20 iterations straight equal 10 + resume to 20, bit for bit (deterministic mode);
- SIGKILL during checkpoint writes leaves the previous checkpoint loadable;
- ``torchrun --nproc-per-node 2`` (gloo) with SyncBN equals one process with the same global
  batch (gradients to 2e-2 relative per tensor; see test_ddp_matches_single_process for the
  setting and the tolerances);
- the lr schedule and weight decay equal direct formulas, and Paddle itself where the
  PaddleSeg reference venv is available.
"""

import json
import os
from pathlib import Path
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time

from liteseg_ros.model import build_model, load_checkpoint, load_model
import numpy as np
from PIL import Image
import pytest
import torch
from training.config import load_config
from training.errors import TrainError
from training.evaluate import evaluate
from training.logs import CSV_NAME, CURVES_NAME, read_csv
from training.sampling import IterationSampler
from training.schedule import build_optimizer, build_scheduler, poly_warmup_lr
from training.synthetic_data import make_cityscapes_like
from training.train import main, train
import yaml

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / 'training' / 'configs' / 'pp_liteseg_t_cityscapes_0.5.yaml'
IMAGE_SIZE = (128, 256)  # (H, W) of the synthetic frames

# The tiny training setting shared by the tests: what differs from the T Cityscapes config.
TINY = {
    'model': {'pretrained_backbone': None},
    'train': {'iters': 50, 'batch_size': 4, 'num_workers': 0, 'crop_size': [128, 64],
              'scale': {'min': 0.5, 'max': 1.0, 'step': 0.25}, 'log_every': 1,
              'eval_every': 50, 'save_every': 10},
    'optimizer': {'lr': 0.05},
    'schedule': {'warmup_iters': 5},
    'loss': {'min_kept': 2000},
    'eval': {'size': [256, 128]},
}

# Paddle 3.3.1's LinearWarmup(PolynomialDecay(lr=0.01, decay_steps=iters - warmup_iters,
# end_lr=0, power=0.9), warmup_steps=10, start_lr=1e-5, end_lr=0.01), built as PaddleSeg 2.8's
# cvlibs/builder.py builds it for iters=50, stepped once per iteration: the lr of the optimizer
# step of iterations 0, 5, 10, 11, 30 and 49 (printed by paddle in the reference venv).
PADDLE_LRS = {0: 1e-05, 5: 0.005005, 10: 0.01, 11: 0.009774716137503496,
              30: 0.005358867312681466, 49: 0.0003615313873979815}


def deep_update(base, extra):
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope='module')
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_cityscapes')
    make_cityscapes_like(root, 16, 4, size=IMAGE_SIZE, seed=0)
    return root


def write_config(directory, root, output_dir, **sections):
    """Write a config inheriting the T Cityscapes config; return its path."""
    data = deep_update(TINY, {'dataset': {'root': str(root)}, 'output_dir': str(output_dir)})
    data = deep_update(data, sections)
    data['_base_'] = str(BASE_CONFIG)
    path = Path(directory) / 'tiny.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def restore_determinism():
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


def losses(output_dir):
    return [float(r['loss']) for r in read_csv(Path(output_dir) / CSV_NAME)]


# ---------------------------------------------------------------------------------------------
# Optimizer and schedule


def test_lr_schedule_equals_formula_and_paddle():
    iters, warmup, lr, start = 50, 10, 0.01, 1e-5
    model = torch.nn.Linear(2, 2)
    config = {'optimizer': {'type': 'sgd', 'lr': lr, 'momentum': 0.9, 'weight_decay': 5e-4},
              'schedule': {'type': 'poly', 'power': 0.9, 'end_lr': 0.0, 'warmup_iters': warmup,
                           'warmup_start_lr': start},
              'train': {'iters': iters}}
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    used = []
    for _ in range(iters):
        used.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    # The float64 formulas evaluated in another order: round-off ~1e-16 relative.
    for i in (0, 1, 5, 9):  # linear warm-up from warmup_start_lr
        assert used[i] == pytest.approx(start + (lr - start) * i / warmup, rel=1e-12)
    for i in (10, 11, 25, 49):  # poly decay counted from the end of warm-up
        assert used[i] == pytest.approx(lr * (1 - (i - warmup) / (iters - warmup)) ** 0.9,
                                        rel=1e-12)
    for i, expected in PADDLE_LRS.items():  # abs for the final lr of 0
        assert used[i] == pytest.approx(expected, rel=1e-12, abs=1e-15), i
    assert used == [poly_warmup_lr(i, lr, iters, 0.9, 0.0, warmup, start) for i in range(iters)]
    # state_dict round trip continues the same curve
    fresh = build_optimizer(model, config)
    restored = build_scheduler(fresh, config)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.last_epoch == iters and restored.get_last_lr() == [0.0]


def test_weight_decay_on_every_trainable_parameter():
    model = build_model('t', 19, dataset='cityscapes')
    config = {'optimizer': {'type': 'sgd', 'lr': 0.1, 'momentum': 0.9, 'weight_decay': 5e-4}}
    optimizer = build_optimizer(model, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    params = optimizer.param_groups[0]['params']
    assert len(optimizer.param_groups) == 1
    assert {id(p) for p in params} == {id(p) for p in trainable}
    assert sum(p.numel() for p in params) == 8141600  # docs/training.md: T trainable parameters
    assert frozen and all(n.endswith('.scale') for n in frozen)  # UAFM's frozen s
    group = optimizer.param_groups[0]
    assert (group['weight_decay'], group['momentum'], group['nesterov'],
            group['dampening']) == (5e-4, 0.9, False, 0.0)
    # With zero gradients one step must shrink every trainable tensor (BN, biases, heads
    # included) by exactly lr * wd * p, and leave the frozen scale alone.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in trainable:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        expected = before[name] if not p.requires_grad else before[name] * (1 - 0.1 * 5e-4)
        # float32 p - lr * wd * p vs p * (1 - lr * wd): an ulp or two (1e-7) apart.
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-9, msg=name)


@pytest.mark.paddle
@pytest.mark.slow
def test_schedule_and_momentum_l2_equal_paddle(tmp_path):
    """Paddle's LinearWarmup(PolynomialDecay) and Momentum(weight_decay) equal ours."""
    sys.path.insert(0, str(REPO / 'test'))
    from paddle_reference import env as paddle_env
    with paddle_env.required_in_ci():
        python = paddle_env.ensure_paddle_venv()
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    b0 = rng.standard_normal(3).astype(np.float32)
    xs = rng.standard_normal((6, 8, 4)).astype(np.float32)
    np.savez(tmp_path / 'in.npz', w0=w0, b0=b0, xs=xs)
    script = textwrap.dedent("""
        import json, sys
        import numpy as np, paddle
        from paddleseg.optimizers import Momentum
        import paddle.optimizer.lr as L
        d = np.load(sys.argv[1])
        # As paddleseg/cvlibs/builder.py: decay_steps = iters - warmup_iters.
        iters, warm = 50, 10
        poly = L.PolynomialDecay(learning_rate=0.01, decay_steps=iters - warm, end_lr=0.0,
                                 power=0.9)
        sched = L.LinearWarmup(learning_rate=poly, warmup_steps=warm, start_lr=1e-5,
                               end_lr=0.01)
        lrs = []
        for _ in range(iters):
            lrs.append(sched())
            sched.step()
        lin = paddle.nn.Linear(4, 3)
        lin.weight.set_value(d['w0']); lin.bias.set_value(d['b0'])
        opt = Momentum(momentum=0.9, weight_decay=5e-4)(lin, 0.1)
        for x in d['xs']:
            loss = (lin(paddle.to_tensor(x)) ** 2).mean()
            loss.backward(); opt.step(); opt.clear_grad()
        json.dump({'lrs': lrs, 'w': lin.weight.numpy().tolist(),
                   'b': lin.bias.numpy().tolist()}, open(sys.argv[2], 'w'))
    """)
    (tmp_path / 'ref.py').write_text(script)
    subprocess.run([str(python), str(tmp_path / 'ref.py'), str(tmp_path / 'in.npz'),
                    str(tmp_path / 'out.json')], check=True, capture_output=True, timeout=600)
    ref = json.loads((tmp_path / 'out.json').read_text())

    lin = torch.nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w0.T))  # paddle Linear weight is [in, out]
        lin.bias.copy_(torch.from_numpy(b0))
    config = {'optimizer': {'type': 'sgd', 'lr': 0.1, 'momentum': 0.9, 'weight_decay': 5e-4}}
    optimizer = build_optimizer(lin, config)
    for x in xs:
        loss = (lin(torch.from_numpy(x)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # float32 SGD steps on O(1) values in two libraries: a few ulps (1e-7) apart.
    np.testing.assert_allclose(lin.weight.detach().numpy().T, ref['w'], rtol=0, atol=1e-6)
    np.testing.assert_allclose(lin.bias.detach().numpy(), ref['b'], rtol=0, atol=1e-6)
    ours = [poly_warmup_lr(i, 0.01, 50, 0.9, 0.0, 10, 1e-5) for i in range(50)]
    # Both float64 formulas: round-off only; abs for the final lr of 0.
    np.testing.assert_allclose(ours, ref['lrs'], rtol=1e-12, atol=1e-15)


@pytest.mark.paddle
def test_from_scratch_init_has_paddlesegs_distributions(tmp_path):
    """
    ``model.init: paddleseg`` draws every tensor as a new PaddleSeg PPLiteSeg does.

    PaddleSeg is built in the reference venv and each tensor's mean and std are compared by
    name (``paddle_to_liteseg_name``): BatchNorm and biases exactly, conv weights of 1000 or
    more values by their std (independent draws: a sample std of n values is within
    ~1/sqrt(2n) < 2.3 % of the true one, so 15 % only fails on a different distribution;
    PyTorch's default init is 0.41x in the head and 30x in the backbone).
    """
    from liteseg_ros.model.paddle_weights import paddle_to_liteseg_name
    from training.train import make_model

    sys.path.insert(0, str(REPO / 'test'))
    from paddle_reference import env as paddle_env
    with paddle_env.required_in_ci():
        python = paddle_env.ensure_paddle_venv()
    script = textwrap.dedent("""
        import json, sys
        import paddle
        from paddleseg.models import PPLiteSeg
        from paddleseg.models.backbones import STDC1
        paddle.seed(0)
        model = PPLiteSeg(num_classes=11, backbone=STDC1(), arm_out_chs=[32, 64, 128],
                          seg_head_inter_chs=[32, 64, 64])
        stats = {k: [int(v.numel()), float(v.numpy().mean()), float(v.numpy().std())]
                 for k, v in model.state_dict().items()}
        json.dump(stats, open(sys.argv[1], 'w'))
    """)
    (tmp_path / 'init.py').write_text(script)
    subprocess.run([str(python), str(tmp_path / 'init.py'), str(tmp_path / 'stats.json')],
                   check=True, capture_output=True, timeout=600)
    paddle_stats = json.loads((tmp_path / 'stats.json').read_text())

    config = load_config(REPO / 'training' / 'configs' / 'pp_liteseg_t_camvid.yaml',
                         ['model.pretrained_backbone=null'])
    assert config['model']['init'] == 'paddleseg'
    torch.manual_seed(0)
    ours = {k: v.double() for k, v in make_model(config, None).state_dict().items()}
    compared = 0
    for name, (count, mean, std) in paddle_stats.items():
        tensor = ours[paddle_to_liteseg_name(name)]
        assert tensor.numel() == count, name
        if std == 0:  # constants: BatchNorm weight/bias and running stats, biases, scale
            assert torch.all(tensor == mean), name
        elif count >= 1000:
            assert float(tensor.std()) == pytest.approx(std, rel=0.15), name
            assert abs(float(tensor.mean())) < 3 * std / count ** 0.5 + 1e-12, name
            compared += 1
    assert compared >= 40  # the 41 conv weights of 1000+ values of T


# ---------------------------------------------------------------------------------------------
# Data order


def test_iteration_sampler_order_is_a_function_of_seed_and_iteration():
    full = IterationSampler(10, 4, seed=3, start_iteration=0, iterations=7)
    batches = list(full)
    assert len(batches) == 7
    # epochs of 10 // 4 = 2 iterations: each epoch draws distinct items (drop_last)
    for epoch in range(3):
        items = [i for b in batches[2 * epoch:2 * epoch + 2] for i, e in b]
        assert len(set(items)) == 8 and all(e == epoch for b in batches[2 * epoch:2 * epoch + 2]
                                            for _, e in b)
    assert list(IterationSampler(10, 4, 3, 5, 7)) == batches[5:]  # resumed position
    shards = [list(IterationSampler(10, 4, 3, 0, 7, rank=r, world_size=2)) for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == batches  # ranks split each global batch
    with pytest.raises(TrainError, match='not divisible'):
        IterationSampler(10, 3, 0, 0, 1, rank=0, world_size=2)
    with pytest.raises(TrainError, match='fewer than'):
        IterationSampler(3, 4, 0, 0, 1)


# ---------------------------------------------------------------------------------------------
# Training


@pytest.mark.slow
def test_training_lowers_loss_and_beats_untrained(dataset_root, tmp_path):
    out = tmp_path / 'out'
    config = load_config(write_config(tmp_path, dataset_root, out))
    summary = train(config, progress=False)
    assert summary['iteration'] == 50
    history = losses(out)
    assert len(history) == 50
    first, last = np.mean(history[:10]), np.mean(history[-10:])
    print(f'\n[train] loss: mean of first 10 iterations {first:.3f}, last 10 {last:.3f}')
    assert last < 0.7 * first, f'loss did not drop clearly: {first:.3f} -> {last:.3f}'
    # The lr the optimizer used at every iteration is PaddleSeg's warm-up + poly value.
    rows = read_csv(out / CSV_NAME)
    for row in rows:
        expected = poly_warmup_lr(int(row['iteration']) - 1, 0.05, 50, 0.9, 0.0, 5, 1e-5)
        assert float(row['lr']) == pytest.approx(expected, rel=1e-6)  # CSV: 8 digits

    # best.pt is a plain liteseg/1 checkpoint; compare it with the untrained initial model.
    from training.datasets import build_dataset
    from training.transforms import build_eval_transforms
    val = build_dataset(config, 'val', build_eval_transforms(config))
    trained = load_model(out / 'best.pt', variant='t', num_classes=19)
    torch.manual_seed(0)
    untrained = build_model('t', 19, dataset='cityscapes').eval()
    kwargs = {'eval_size': (256, 128), 'progress': False}
    miou_trained = evaluate(trained, val, 19, **kwargs)['miou']
    miou_untrained = evaluate(untrained, val, 19, **kwargs)['miou']
    print(f'[train] val mIoU: untrained {miou_untrained:.4f}, trained {miou_trained:.4f}')
    assert miou_trained > miou_untrained + 0.03
    # The same evaluation of the same weights, written to the CSV with 8 digits.
    assert float(rows[-1]['miou']) == pytest.approx(miou_trained, abs=1e-6)
    assert load_checkpoint(out / 'best.pt')['iteration'] == 50

    # logs and pictures
    assert (out / CURVES_NAME).stat().st_size > 10000
    with Image.open(out / CURVES_NAME) as im:
        assert im.format == 'PNG'
    assert list((out / 'tensorboard').glob('events.out.tfevents.*'))
    last = load_checkpoint(out / 'last.pt')
    assert last['iteration'] == 50 and last['scheduler']['last_epoch'] == 50


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(dataset_root, tmp_path, restore_determinism):
    common = {'train': {'iters': 20, 'eval_every': 20, 'save_every': 10}}
    straight = tmp_path / 'straight'
    config = load_config(write_config(tmp_path, dataset_root, straight, **common))
    train(config, deterministic=True, progress=False)

    resumed = tmp_path / 'resumed'
    config = load_config(write_config(tmp_path, dataset_root, resumed, **common))
    summary = train(config, deterministic=True, progress=False, stop_at=10)
    assert summary['iteration'] == 10
    assert load_checkpoint(resumed / 'last.pt')['iteration'] == 10
    # The second half loads data with 2 worker processes: the data order and augmentation
    # are functions of (seed, iteration), not of the loader.
    config = load_config(write_config(tmp_path, dataset_root, resumed, **common),
                         ['train.num_workers=2'])
    summary = train(config, resume=True, deterministic=True, progress=False)
    assert summary['iteration'] == 20

    a, b = load_checkpoint(straight / 'last.pt'), load_checkpoint(resumed / 'last.pt')
    assert a['iteration'] == b['iteration'] == 20
    assert a['model'].keys() == b['model'].keys()
    for key in a['model']:
        assert torch.equal(a['model'][key], b['model'][key]), key
    momenta_a = [s['momentum_buffer'] for s in a['optimizer']['state'].values()]
    momenta_b = [s['momentum_buffer'] for s in b['optimizer']['state'].values()]
    assert len(momenta_a) == len(momenta_b) > 0
    assert all(torch.equal(x, y) for x, y in zip(momenta_a, momenta_b))
    assert losses(straight) == losses(resumed)  # the CSV continues without duplicates
    assert [int(r['iteration']) for r in read_csv(resumed / CSV_NAME)] == list(range(1, 21))


KILL_SCRIPT = """
import itertools, sys
import torch
from liteseg_ros.model import build_model
from training.schedule import build_optimizer, build_scheduler
from training.checkpoints import save_training_checkpoint

path, start = sys.argv[1], int(sys.argv[2])
model = build_model('t', 19, dataset='cityscapes')
config = {'optimizer': {'type': 'sgd', 'lr': 0.01, 'weight_decay': 5e-4},
          'schedule': {'type': 'poly', 'warmup_iters': 0}, 'train': {'iters': 10}}
optimizer = build_optimizer(model, config)
scheduler = build_scheduler(optimizer, config)
scaler = torch.amp.GradScaler('cpu', enabled=False)
for i in itertools.count(start):
    with torch.no_grad():
        model.seg_heads[0].classifier.weight.fill_(i)
    save_training_checkpoint(path, model, optimizer, scheduler, scaler, i, config,
                             payload=torch.full((1_000_000,), float(i)))
    print(i, flush=True)
"""


@pytest.mark.slow
def test_kill_during_checkpoint_write_keeps_previous(tmp_path):
    script = tmp_path / 'writer.py'
    script.write_text(KILL_SCRIPT)
    path = tmp_path / 'last.pt'
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    rng = random.Random(0)
    completed, interrupted_writes = -1, 0
    for round_ in range(5):
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(1000 * round_)],
                                stdout=subprocess.PIPE, text=True, env=env)
        try:
            first = proc.stdout.readline()  # one checkpoint fully written by this process
            assert first.strip(), 'checkpoint writer produced no checkpoint'
            completed = int(first)
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        for line in proc.stdout.read().split():
            completed = int(line)
        proc.stdout.close()
        interrupted_writes += bool(list(tmp_path.glob('.last.pt.*.tmp')))
        checkpoint = load_checkpoint(path)  # loadable, and consistent throughout
        i = checkpoint['iteration']
        assert i >= completed, (i, completed)
        assert torch.all(checkpoint['payload'] == i)
        assert torch.all(checkpoint['model']['seg_heads.0.classifier.weight'] == i)
    # the kills did land inside writes (their temporary files stay behind)
    assert interrupted_writes >= 1


def test_errors_name_the_problem(dataset_root, tmp_path, capsys):
    missing = tmp_path / 'nowhere'
    config = write_config(tmp_path, missing, tmp_path / 'out')
    assert main(['--config', str(config), '--no-progress']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'error' in err[0] and str(missing) in err[0], err

    config = write_config(tmp_path, dataset_root, tmp_path / 'out',
                          model={'pretrained_backbone': str(tmp_path / 'tiny.yaml')})
    assert main(['--config', str(config), '--no-progress']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert 'liteseg-backbone/1' in err[-1] and 'tiny.yaml' in err[-1], err

    config = write_config(tmp_path, dataset_root, tmp_path / 'out')
    assert main(['--config', str(config), '--resume', '--output-dir',
                 str(tmp_path / 'empty')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert 'last.pt' in err[-1] and 'does not exist' in err[-1], err

    assert main(['--config', str(tmp_path / 'absent.yaml')]) == 2
    assert 'absent.yaml' in capsys.readouterr().err


def test_pretrained_backbone_is_loaded(dataset_root, tmp_path):
    from training.checkpoints import load_pretrained_backbone
    source = build_model('t', 19, dataset='cityscapes')
    path = tmp_path / 'stdc1.pt'
    torch.save({'format': 'liteseg-backbone/1', 'variant': 't',
                'backbone': source.backbone.state_dict()}, path)
    model = build_model('t', 19, dataset='cityscapes')
    load_pretrained_backbone(model, path)
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    with pytest.raises(TrainError, match="variant 't'"):
        load_pretrained_backbone(build_model('b', 19, dataset='cityscapes'), path)


def test_fine_tune_initialisation_skips_other_class_counts(tmp_path):
    from liteseg_ros.model import save_checkpoint
    from training.checkpoints import load_initial_weights
    source = build_model('t', 19, dataset='cityscapes')
    save_checkpoint(tmp_path / 'city.pt', source)
    model = build_model('t', 4, class_names=['a', 'b', 'c', 'd'])
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    loaded, skipped = load_initial_weights(model, tmp_path / 'city.pt', log=lambda m: None)
    assert skipped == 3  # the three heads' classifiers (19 vs 4 classes)
    for key, value in model.state_dict().items():
        expected = fresh[key] if key.endswith('classifier.weight') else source.state_dict()[key]
        assert torch.equal(value, expected), key
    assert loaded == len(fresh) - 3


# ---------------------------------------------------------------------------------------------
# DDP


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _torchrun(config_path, output_dir, *extra):
    # TMPDIR: torchrun leaves a torchelastic_* directory in the temporary directory.
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1',
               TMPDIR=str(Path(output_dir).parent))
    command = [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '1',
               '--nproc-per-node', '2', '--master-addr', '127.0.0.1', '--master-port',
               str(_free_port()), '-m', 'training.train', '--config', str(config_path),
               '--output-dir', str(output_dir), '--device', 'cpu', '--deterministic',
               '--no-progress', *extra]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '2 process(es) x 2' in result.stderr
    return result


def _gradient_errors(a, b):
    """Return (max per-tensor, global) relative difference of the momentum buffers."""
    buffers = [(a['optimizer']['state'][i]['momentum_buffer'],
                b['optimizer']['state'][i]['momentum_buffer']) for i in a['optimizer']['state']]
    per_tensor = max(((x - y).norm() / x.norm()).item() for x, y in buffers)
    total = (sum((x - y).norm() ** 2 for x, y in buffers)
             / sum(x.norm() ** 2 for x, _ in buffers)).sqrt().item()
    return per_tensor, total


def _running_stats_error(a, b):
    return max((v - b['model'][k]).abs().max().item() for k, v in a['model'].items()
               if 'running' in k)


@pytest.mark.slow
def test_ddp_matches_single_process(tmp_path, restore_determinism):
    """
    ``torchrun --nproc-per-node 2`` (gloo, CPU, SyncBN) equals one process with batch 4.

    Setting, so that the two are the same computation up to float summation order: SyncBN
    (our implementation on CPU: torch 2.13's SyncBatchNorm is CUDA-only) gives every BatchNorm
    the statistics of the global batch; labels without ignore pixels (the ego-vehicle strip is
    relabelled road) and no padding (scale 1, crop inside the image) make both processes
    average their loss over equal pixel counts; min_kept above the pixel count keeps every
    pixel in OHEM (min_kept is per process as in PaddleSeg, so otherwise one process of 4
    images and two of 2 select different pixels, by design). The sampler gives the ranks the
    two halves of the single process's global batch, with the same augmentation draws.

    Tolerances, after iteration 1 (measured: loss 1e-7, running stats 4e-7, gradients 2.3e-3
    worst tensor / 6e-4 overall): loss rtol 1e-5; BatchNorm running statistics 1e-5
    absolute; gradients (the momentum buffers after the first step are grad + wd * p) 2e-2
    per tensor and 5e-3 overall, relative. Without SyncBN the gradients differ by 3.7 / 1.6:
    the check below shows it. Later iterations are compared loosely (loss rtol 2e-2; measured
    3e-3): from random init at this tiny crop the training is chaotic (SPPM's 1x1-bin
    BatchNorm normalises 4 numbers), and the float summation order alone (1 vs 2 threads in
    one process) moves the weights as far apart as DDP does after a few iterations.
    """
    root = tmp_path / 'data'
    make_cityscapes_like(root, 16, 4, size=IMAGE_SIZE, seed=1)
    for label_path in root.glob('gtFine/*/*/*_labelIds.png'):
        label = np.array(Image.open(label_path))
        label[label == 1] = 7  # ego vehicle (ignored) -> road
        Image.fromarray(label).save(label_path)
    # PyTorch's init: after PaddleSeg's N(0, 0.001) backbone convs, BatchNorm divides by
    # activations of ~1e-3 std, and float summation order alone moves some gradients by O(1).
    sections = {'model': {'init': 'torch'},
                'train': {'iters': 6, 'eval_every': 6, 'save_every': 6,
                          'scale': {'min': 1.0, 'max': 1.0, 'step': 0.0}, 'sync_bn': True},
                'optimizer': {'lr': 0.005}, 'schedule': {'warmup_iters': 2},
                'loss': {'min_kept': 10 ** 9}}
    single, ddp, unsynced = tmp_path / 'single', tmp_path / 'ddp', tmp_path / 'unsynced'
    config_path = write_config(tmp_path, root, single, **sections)
    train(load_config(config_path), deterministic=True, progress=False, stop_at=1)
    _torchrun(config_path, ddp, '--stop-at', '1')
    _torchrun(config_path, unsynced, '--stop-at', '1', '--override', 'train.sync_bn=false')

    a, b, c = (load_checkpoint(d / 'last.pt') for d in (single, ddp, unsynced))
    assert (a['world_size'], b['world_size'], a['iteration'], b['iteration']) == (1, 2, 1, 1)
    per_tensor, total = _gradient_errors(a, b)
    stats = _running_stats_error(a, b)
    print(f'\n[ddp] iteration 1, single vs 2 processes: gradients {per_tensor:.1e} worst '
          f'tensor, {total:.1e} overall; running stats {stats:.1e}')
    # Summation order only; bounds and measured values in the docstring.
    assert per_tensor < 2e-2 and total < 5e-3
    assert stats < 1e-5
    np.testing.assert_allclose(losses(ddp), losses(single), rtol=1e-5)
    for key, value in a['model'].items():
        if not value.is_floating_point():
            assert torch.equal(value, b['model'][key]), key
    unsynced_errors = _gradient_errors(a, c)
    print(f'[ddp] without SyncBN: gradients {unsynced_errors[0]:.1e} worst tensor, '
          f'{unsynced_errors[1]:.1e} overall')
    assert unsynced_errors[1] > 100 * total  # the comparison does see per-process BN

    # Resume both to iteration 6 (DDP resume included) and compare the losses loosely.
    train(load_config(config_path), resume=True, deterministic=True, progress=False)
    _torchrun(config_path, ddp, '--resume')
    print(f'[ddp] losses single {np.round(losses(single), 4).tolist()}, 2 processes '
          f'{np.round(losses(ddp), 4).tolist()}')
    assert len(losses(ddp)) == 6
    np.testing.assert_allclose(losses(ddp), losses(single), rtol=2e-2)  # chaotic: docstring
    assert read_csv(ddp / CSV_NAME)[-1]['miou'] != ''
    assert load_model(ddp / 'best.pt', variant='t', num_classes=19) is not None
