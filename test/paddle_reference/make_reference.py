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
Make PaddleSeg PP-LiteSeg reference outputs for the torch parity test.

Run this with the python of the PaddlePaddle reference venv (see ``env.py``);
it imports neither torch nor liteseg_ros.  For every ``--case
VARIANT:NUM_CLASSES:HEIGHT:WIDTH`` it builds PaddleSeg's own
``paddleseg.models.PPLiteSeg`` with the arguments of PaddleSeg's
``configs/pp_liteseg/*.yml``, fills every parameter and BN buffer from a
seeded numpy RNG (PaddleSeg's own init gives ~1e-10 logits, useless for a
comparison) and writes into ``OUT_DIR/<variant>_<classes>_<H>x<W>/``:

- ``model.pdparams``: ``paddle.save(model.state_dict())``, the file the
  converter reads;
- ``input.npy``: float32 (1, 3, H, W) smooth image-like input in [-1, 1];
- ``logits.npy``: float32 (1, C, H, W) eval-mode logits;
- ``logits64.npy``: float64 (1, C, H, W) eval-mode logits of the same model
  and input computed in float64 (the exact reference);
- ``train_input.npy``: float32 (2, 3, H/2, W/2), a batch of two images at
  half the case size (keeps the outputs small), so that train-mode BN
  batch statistics span more than one image;
- ``train_logits.npy``: float32 (3, 2, C, H/2, W/2), the three train-mode
  head outputs (x8, x16, x32 heads, each resized to the input size);
- ``train_logits64.npy``: float64, the same train-mode forward in float64;
- ``train_state.pdparams``: the state dict after that one train-mode
  forward (BN running statistics updated with PaddleSeg's momentum);
- ``info.json``: parameter counts, versions, the pickle globals of
  ``model.pdparams`` and logit statistics.

``OUT_DIR/manifest.json`` lists the case directories.
"""

import argparse
import io
import json
import os
import pickle
import pickletools
import sys
import time
import zlib

import numpy as np

# Keep paddle on the CPU, quiet and single-process before it is imported.
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('GLOG_minloglevel', '2')

import paddle  # noqa: E402,I100,I202
import paddle.nn as nn  # noqa: E402
import paddleseg  # noqa: E402
from paddleseg.models import PPLiteSeg  # noqa: E402
from paddleseg.models.backbones import STDC1, STDC2  # noqa: E402

# Arguments of PaddleSeg 2.8 configs/pp_liteseg/pp_liteseg_stdc{1,2}_*.yml.
VARIANTS = {
    't': {
        'backbone': STDC1,
        'arm_out_chs': [32, 64, 128],
        'seg_head_inter_chs': [32, 64, 64],
    },
    'b': {
        'backbone': STDC2,
        'arm_out_chs': [64, 96, 128],
        'seg_head_inter_chs': [64, 64, 64],
    },
}
COMMON_ARGS = {
    'arm_type': 'UAFM_SpAtten',
    'cm_bin_sizes': [1, 2, 4],
    'cm_out_ch': 128,
    'backbone_indices': [2, 3, 4],
}
# Trainable parameter counts with 19 classes (as docs/training.md lists them).
EXPECTED_TRAINABLE_19 = {'t': 8141600, 'b': 12366464}
PICKLE_ALLOWED_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy._core.multiarray', '_reconstruct'),
}


def parse_case(text):
    """Parse ``VARIANT:NUM_CLASSES:HEIGHT:WIDTH`` into a dict."""
    parts = text.split(':')
    if len(parts) != 4 or parts[0] not in VARIANTS:
        raise argparse.ArgumentTypeError(
            f'bad --case {text!r}: expected VARIANT:NUM_CLASSES:HEIGHT:WIDTH with VARIANT '
            f'in {sorted(VARIANTS)}, e.g. t:19:512:1024')
    try:
        num_classes, height, width = (int(p) for p in parts[1:])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'bad --case {text!r}: NUM_CLASSES, HEIGHT and WIDTH must be integers')
    if num_classes < 1 or height < 32 or width < 32:
        raise argparse.ArgumentTypeError(
            f'bad --case {text!r}: need NUM_CLASSES >= 1 and HEIGHT, WIDTH >= 32')
    return {'variant': parts[0], 'num_classes': num_classes, 'height': height, 'width': width}


def case_name(case):
    """Return the directory name of a case, e.g. ``t_19_512x1024``."""
    return f"{case['variant']}_{case['num_classes']}_{case['height']}x{case['width']}"


def float64_model(variant, num_classes, seed):
    """Return the filled model of a case converted to float64 (weights cast exactly)."""
    model = build_model(variant, num_classes)
    fill_parameters(model, seed)
    model.to(dtype='float64')
    return model


def build_model(variant, num_classes):
    """Build PaddleSeg's PPLiteSeg exactly as its configs do."""
    spec = VARIANTS[variant]
    return PPLiteSeg(
        num_classes=num_classes,
        backbone=spec['backbone'](),
        arm_out_chs=spec['arm_out_chs'],
        seg_head_inter_chs=spec['seg_head_inter_chs'],
        **COMMON_ARGS)


def _rng(seed, name):
    """Return a generator seeded by the run seed and the tensor's state-dict key."""
    return np.random.default_rng([seed, zlib.crc32(name.encode('utf-8'))])


def _set(tensor, array):
    tensor.set_value(array.astype(np.float32).reshape(tensor.shape))


def fill_parameters(model, seed):
    """
    Fill every conv/BN parameter and BN buffer from a seeded RNG.

    Conv weights N(0, 2/fan_in) with fan_in = in_ch/groups*kh*kw, conv biases
    N(0, 0.1^2); BN gamma U(0.5, 1.5), beta N(0, 0.1^2), running mean
    N(0, 0.1^2), running variance U(0.5, 1.5).  The UAFM ``_scale`` stays 1.
    Returns the number of tensors filled; raises if any state-dict entry other
    than ``_scale`` was left alone.
    """
    filled = set()
    for prefix, layer in model.named_sublayers(include_self=True):
        pre = f'{prefix}.' if prefix else ''
        if isinstance(layer, nn.Conv2D):
            shape = list(layer.weight.shape)
            fan_in = int(np.prod(shape[1:]))  # weight is [out, in/groups, kh, kw]
            name = pre + 'weight'
            _set(layer.weight, _rng(seed, name).normal(0.0, np.sqrt(2.0 / fan_in), shape))
            filled.add(name)
            if layer.bias is not None:
                name = pre + 'bias'
                _set(layer.bias, _rng(seed, name).normal(0.0, 0.1, layer.bias.shape))
                filled.add(name)
        elif isinstance(layer, nn.layer.norm._BatchNormBase):
            draws = {
                'weight': lambda r, s: r.uniform(0.5, 1.5, s),
                'bias': lambda r, s: r.normal(0.0, 0.1, s),
                '_mean': lambda r, s: r.normal(0.0, 0.1, s),
                '_variance': lambda r, s: r.uniform(0.5, 1.5, s),
            }
            for attr, draw in draws.items():
                tensor = getattr(layer, attr)
                name = pre + attr
                _set(tensor, draw(_rng(seed, name), list(tensor.shape)))
                filled.add(name)
    missing = [k for k in model.state_dict() if k not in filled and not k.endswith('._scale')]
    if missing:
        raise RuntimeError(f'make_reference: no RNG fill rule for state-dict entries {missing}; '
                           'add one in fill_parameters()')
    return len(filled)


def _interp_matrix(n_out, n_in):
    """Linear interpolation matrix (n_out, n_in) mapping n_in knots over n_out samples."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = pos - lo
    mat = np.zeros((n_out, n_in))
    mat[np.arange(n_out), lo] = 1.0 - frac
    mat[np.arange(n_out), lo + 1] = frac
    return mat


def smooth_images(seed, batch, height, width):
    """
    Return float32 (batch, 3, H, W) image-like tensors in [-1, 1].

    Value noise over several octaves (smooth gradients and blobs), a few
    sharp-edged rectangles (object boundaries) and a little pixel noise.
    """
    rng = np.random.default_rng([seed, 0x1A9E])
    out = np.zeros((batch, 3, height, width))
    for b in range(batch):
        img = np.zeros((3, height, width))
        for cells, amp in ((3, 1.0), (9, 0.5), (33, 0.25), (97, 0.12)):
            gy = max(2, cells * height // max(height, width) + 2)
            gx = max(2, cells * width // max(height, width) + 2)
            my, mx = _interp_matrix(height, gy), _interp_matrix(width, gx)
            grid = rng.normal(0.0, 1.0, (3, gy, gx))
            img += amp * (my @ grid @ mx.T)
        for _ in range(6):
            h0, w0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
            h1 = h0 + rng.integers(height // 8, height // 2)
            w1 = w0 + rng.integers(width // 8, width // 2)
            img[:, h0:h1, w0:w1] = 0.5 * img[:, h0:h1, w0:w1] + rng.normal(0.0, 0.8, (3, 1, 1))
        img += rng.normal(0.0, 0.03, img.shape)
        out[b] = np.tanh(img / (2.0 * img.std()))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def inspect_pickle(path):
    """Return the pickle protocol and the exact (module, name) globals of a .pdparams file."""
    with open(path, 'rb') as f:
        data = f.read()
    first = next(pickletools.genops(data))
    protocol = first[1] if first[0].name == 'PROTO' else None
    seen = set()

    class Recorder(pickle.Unpickler):

        def find_class(self, module, name):
            seen.add((module, name))
            return super().find_class(module, name)

    obj = Recorder(io.BytesIO(data)).load()
    values = {k: v for k, v in obj.items() if k != 'StructuredToParameterName@@'}
    dtypes = sorted({str(v.dtype) for v in values.values()})
    value_types = sorted({type(v).__name__ for v in values.values()})
    return {
        'protocol': protocol,
        'globals': sorted(f'{m}.{n}' for m, n in seen),
        'only_allowed_globals': seen <= PICKLE_ALLOWED_GLOBALS,
        'top_level_type': type(obj).__name__,
        'value_types': value_types,
        'dtypes': dtypes,
        'num_arrays': len(values),
        'extra_keys': sorted(k for k in obj if k.endswith('@@')),
    }


def run_case(case, out_dir, seed, train):
    """Build, fill, run and save one case; return its info dict."""
    t0 = time.perf_counter()
    name = case_name(case)
    case_dir = os.path.join(out_dir, name)
    os.makedirs(case_dir, exist_ok=True)
    variant, num_classes = case['variant'], case['num_classes']
    height, width = case['height'], case['width']

    paddle.seed(seed)
    model = build_model(variant, num_classes)
    num_filled = fill_parameters(model, seed)
    params = list(model.parameters())
    trainable = int(sum(int(np.prod(p.shape)) for p in params if not p.stop_gradient))
    total = int(sum(int(np.prod(p.shape)) for p in params))
    if num_classes == 19 and trainable != EXPECTED_TRAINABLE_19[variant]:
        raise RuntimeError(f'{name}: {trainable} trainable parameters, docs/training.md says '
                           f'{EXPECTED_TRAINABLE_19[variant]}')
    pdparams = os.path.join(case_dir, 'model.pdparams')
    paddle.save(model.state_dict(), pdparams)
    pickle_info = inspect_pickle(pdparams)

    image = smooth_images(seed * 1000003 + height * 7 + width, 1, height, width)
    np.save(os.path.join(case_dir, 'input.npy'), image)

    model.eval()
    with paddle.no_grad():
        logits = model(paddle.to_tensor(image))[0].numpy().astype(np.float32)
    np.save(os.path.join(case_dir, 'logits.npy'), logits)
    model64 = float64_model(variant, num_classes, seed)
    model64.eval()
    with paddle.no_grad():
        logits64 = model64(paddle.to_tensor(image.astype(np.float64)))[0].numpy()
    assert logits64.dtype == np.float64, logits64.dtype
    np.save(os.path.join(case_dir, 'logits64.npy'), logits64)
    t_eval = time.perf_counter() - t0

    info = {
        'case': name,
        'variant': variant,
        'num_classes': num_classes,
        'height': height,
        'width': width,
        'seed': seed,
        'trainable_params': trainable,
        'total_params': total,
        'state_dict_entries': len(model.state_dict()),
        'filled_tensors': num_filled,
        'logits_abs_max': float(np.abs(logits).max()),
        'logits_std': float(logits.std()),
        'float32_rel_error': float(np.abs(logits - logits64).max() / np.abs(logits64).max()),
        'pickle': pickle_info,
        'versions': {
            'paddle': paddle.__version__,
            'paddleseg': paddleseg.__version__,
            'numpy': np.__version__,
            'python': sys.version.split()[0],
        },
        'train': train,
    }
    if train:
        # Half the case size keeps the (3, 2, C, H, W) output small; 720x960 -> 360x480
        # still has an x32 map (12x15) that bin 4 of the adaptive pooling does not divide.
        train_h, train_w = height // 2, width // 2
        images = smooth_images(seed * 1000003 + height * 7 + width + 1, 2, train_h, train_w)
        model.train()
        with paddle.no_grad():
            heads = model(paddle.to_tensor(images))
        train_logits = np.stack([h.numpy() for h in heads]).astype(np.float32)
        model64.train()
        with paddle.no_grad():
            heads64 = model64(paddle.to_tensor(images.astype(np.float64)))
        np.save(os.path.join(case_dir, 'train_logits64.npy'),
                np.stack([h.numpy() for h in heads64]))
        np.save(os.path.join(case_dir, 'train_input.npy'), images)
        np.save(os.path.join(case_dir, 'train_logits.npy'), train_logits)
        paddle.save(model.state_dict(), os.path.join(case_dir, 'train_state.pdparams'))
        info['train_size'] = [train_h, train_w]
        info['train_logits_abs_max'] = float(np.abs(train_logits).max())
    info['seconds'] = {'eval': round(t_eval, 2), 'total': round(time.perf_counter() - t0, 2)}
    with open(os.path.join(case_dir, 'info.json'), 'w') as f:
        json.dump(info, f, indent=2, sort_keys=True)
    return info


def main(argv=None):
    """Parse arguments and make every case."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', required=True, help='directory to write the cases into')
    parser.add_argument('--case', action='append', type=parse_case, required=True,
                        help='VARIANT:NUM_CLASSES:HEIGHT:WIDTH, e.g. t:19:512:1024 (repeatable)')
    parser.add_argument('--seed', type=int, default=0, help='RNG seed (default 0)')
    parser.add_argument('--no-train', action='store_true',
                        help='skip the train-mode outputs (train_*.npy, train_state.pdparams)')
    args = parser.parse_args(argv)

    paddle.set_device('cpu')
    os.makedirs(args.out_dir, exist_ok=True)
    names = []
    for case in args.case:
        info = run_case(case, args.out_dir, args.seed, not args.no_train)
        names.append(info['case'])
        print(f"make_reference: {info['case']}: trainable params {info['trainable_params']:,} "
              f"(total {info['total_params']:,}), |logits| max {info['logits_abs_max']:.2f} "
              f"std {info['logits_std']:.2f}, pickle protocol {info['pickle']['protocol']} "
              f"globals {info['pickle']['globals']}, {info['seconds']['total']} s", flush=True)
    with open(os.path.join(args.out_dir, 'manifest.json'), 'w') as f:
        json.dump({'seed': args.seed, 'cases': names}, f, indent=2)
    print(f'make_reference: wrote {len(names)} case(s) to {args.out_dir}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
