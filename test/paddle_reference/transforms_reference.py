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
Run PaddleSeg's own train/val transforms and OHEM loss for the parity tests, recording draws.

Run with the python of the PaddleSeg reference venv (``env.py``); imports neither torch nor
liteseg_ros. ``--spec SPEC.json`` lists:

- ``transforms``: cases ``{name, image, label, mode: train|val, seed, transforms: [{type,
  ...kwargs}]}``. Each case seeds ``random`` and ``numpy.random``, builds
  ``paddleseg.transforms.Compose`` from the PaddleSeg transform classes and runs it on the
  image and label files exactly as ``paddleseg.datasets.Dataset.__getitem__`` does. Every
  random draw (``random.random``, ``random.shuffle``, ``np.random.uniform``,
  ``np.random.randint``, ``np.random.shuffle``) is recorded in call order with its arguments
  and result, so the caller can replay PaddleSeg's draws into its own transforms;
- ``ohem``: cases ``{name, logits (.npy, NCHW float32), label (.npy, NHW int64), thresh,
  min_kept, ignore_index}`` evaluated with ``paddleseg.models.losses.OhemCrossEntropyLoss``,
  with the gradient with respect to the logits. PaddleSeg 2.8's forward relies on Paddle
  2.x's implicit cast in one float32 + int64 addition that Paddle 3 rejects; that cast is
  written out (``paddle2_ohem_class``), nothing else changes.

Writes ``OUT/transforms.npz`` (``img/<name>`` float32 CHW, ``label/<name>``),
``OUT/draws.json`` ({name: [draws]}), ``OUT/ohem.npz`` (``loss/<name>``, ``grad/<name>``) and
``OUT/info.json`` (versions).

The test side calls :func:`run_reference` (importable without paddle), which runs this file in
the reference venv and loads its outputs.
"""

import argparse
import json
import os
from pathlib import Path
import random
import subprocess
import sys

import numpy as np

DRAWS = []
TIMEOUT_S = 900


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return getattr(value, '__name__', value)


def _record(owner, attr, tag):
    original = getattr(owner, attr)

    def recorded(*args, **kwargs):
        result = original(*args, **kwargs)
        if attr == 'shuffle':
            DRAWS.append({'call': tag, 'args': [], 'result': [_plain(v) for v in args[0]]})
        else:
            DRAWS.append({'call': tag, 'args': [_plain(a) for a in args],
                          'result': _plain(result)})
        return result

    setattr(owner, attr, recorded)


def install_recorders():
    """Record every random draw PaddleSeg's transforms make."""
    _record(random, 'random', 'random.random')
    _record(random, 'shuffle', 'random.shuffle')
    _record(np.random, 'uniform', 'np.random.uniform')
    _record(np.random, 'randint', 'np.random.randint')
    _record(np.random, 'shuffle', 'np.random.shuffle')


def run_transforms(case):
    """Run one transforms case; return (image CHW float32, label, draws)."""
    from paddleseg import transforms as T

    del DRAWS[:]
    random.seed(case['seed'])
    np.random.seed(case['seed'])
    ops = [getattr(T, spec['type'])(**{k: v for k, v in spec.items() if k != 'type'})
           for spec in case['transforms']]
    compose = T.Compose(ops)
    data = {'img': case['image'], 'label': case['label'], 'trans_info': [], 'gt_fields': []}
    if case['mode'] == 'train':
        data['gt_fields'].append('label')
    data = compose(data)
    return np.asarray(data['img'], dtype=np.float32), np.asarray(data['label']), list(DRAWS)


# PaddleSeg 2.8 adds an int64 mask to float32 probabilities; Paddle 2.x cast the right
# operand to the left one's dtype implicitly, Paddle 3 refuses. This is the one line of
# OhemCrossEntropyLoss.forward that needs it; the patch spells out Paddle 2.x's cast.
OHEM_MIXED_DTYPE_LINE = 'prob = prob + (1 - valid_mask)'
OHEM_PADDLE2_CAST = 'prob = prob + (1 - valid_mask).astype(prob.dtype)'


def paddle2_ohem_class():
    """Return PaddleSeg's OhemCrossEntropyLoss with Paddle 2.x dtype casting spelled out."""
    import inspect
    import textwrap

    from paddleseg.models.losses import ohem_cross_entropy_loss as module

    source = textwrap.dedent(inspect.getsource(module.OhemCrossEntropyLoss.forward))
    if source.count(OHEM_MIXED_DTYPE_LINE) != 1:
        raise RuntimeError('PaddleSeg OhemCrossEntropyLoss.forward changed: expected one '
                           f'{OHEM_MIXED_DTYPE_LINE!r}')
    namespace = dict(vars(module))
    exec(source.replace(OHEM_MIXED_DTYPE_LINE, OHEM_PADDLE2_CAST), namespace)
    return type('OhemCrossEntropyLossPaddle2', (module.OhemCrossEntropyLoss,),
                {'forward': namespace['forward']})


def run_ohem(case):
    """Return (loss, d loss / d logits) of PaddleSeg's OhemCrossEntropyLoss."""
    import paddle

    OhemCrossEntropyLoss = paddle2_ohem_class()
    logits = paddle.to_tensor(np.load(case['logits']), stop_gradient=False)
    label = paddle.to_tensor(np.load(case['label']))
    loss_fn = OhemCrossEntropyLoss(thresh=case['thresh'], min_kept=case['min_kept'],
                                   ignore_index=case['ignore_index'])
    loss = loss_fn(logits, label)
    loss.backward()
    return np.asarray(float(loss.numpy())), logits.grad.numpy()


def run_reference(spec, out_dir, python):
    """
    Run this script with the reference venv's ``python`` on ``spec``; return its outputs.

    :returns: dict with ``transforms`` and ``ohem`` (loaded npz files), ``draws`` and ``info``.
    :raises RuntimeError: the script failed; the message holds its output.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path = out_dir / 'spec.json'
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV')}
    result = subprocess.run([str(python), __file__, '--spec', str(spec_path), '--out',
                             str(out_dir)], env=env, capture_output=True, text=True,
                            timeout=TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f'{__file__} failed (exit {result.returncode}):\n'
                           f'{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    return {'transforms': dict(np.load(out_dir / 'transforms.npz')),
            'ohem': dict(np.load(out_dir / 'ohem.npz')),
            'draws': json.loads((out_dir / 'draws.json').read_text()),
            'info': json.loads((out_dir / 'info.json').read_text())}


def main():
    """Run the cases of the spec file (in the reference venv)."""
    os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
    os.environ.setdefault('GLOG_minloglevel', '2')
    import cv2
    import paddle
    import paddleseg
    import PIL

    parser = argparse.ArgumentParser()
    parser.add_argument('--spec', required=True)
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paddle.set_device('cpu')
    install_recorders()
    arrays, draws = {}, {}
    for case in spec.get('transforms', []):
        image, label, case_draws = run_transforms(case)
        arrays[f"img/{case['name']}"] = image
        arrays[f"label/{case['name']}"] = label
        draws[case['name']] = case_draws
    np.savez(out / 'transforms.npz', **arrays)
    (out / 'draws.json').write_text(json.dumps(draws))
    losses = {}
    for case in spec.get('ohem', []):
        loss, grad = run_ohem(case)
        losses[f"loss/{case['name']}"] = loss
        losses[f"grad/{case['name']}"] = grad
    np.savez(out / 'ohem.npz', **losses)
    info = {'paddle': paddle.__version__, 'paddleseg': paddleseg.__version__,
            'numpy': np.__version__, 'opencv': cv2.__version__, 'pillow': PIL.__version__,
            'python': sys.version.split()[0]}
    (out / 'info.json').write_text(json.dumps(info))
    print('transforms_reference: done', json.dumps(info))
    return 0


if __name__ == '__main__':
    sys.exit(main())
