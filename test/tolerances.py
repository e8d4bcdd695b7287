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
Logit tolerances of the exactness tests, anchored on a float64 reference.

float32 results depend on the CPU: oneDNN's AVX2 and AVX-512 convolution kernels (and ONNX
Runtime's MLAS ones) sum in different orders.  So an exactness claim compares each float32
implementation (PyTorch, ONNX Runtime, PaddleSeg) with the same network run in float64, and
bounds the difference relative to the logit scale max|logits_f64|.  docs/benchmarks.md
("Float32 vs float64 reference") lists measured figures.
"""

import copy

import numpy as np
import torch

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # 1.19e-7

# One conv output sums ~1e3 products (3x3 kernels over 64..256 channels): its rounding grows
# like sqrt(1e3) ~ 32 eps.  PP-LiteSeg chains ~40 (T) to ~65 (B) convs from image to logits;
# their errors add up to between sqrt(n) ~ 8 and n ~ 65 times one layer's: take 32.
ROUNDING_GROWTH = 32 * 32
# 1.2e-4 of the logit scale.  Measured: 1e-6 (AVX-512), 3.4e-6 (oneDNN limited to AVX2 on
# that CPU), ~1.4e-5 (Zen 3, AVX2 only).  align_corners=True in one resize moves 0.2 of it.
LOGIT_REL = FLOAT32_EPS * ROUNDING_GROWTH
# Train-mode BN divides by the std of a batch of 2 in SPPM's 1x1 bin, multiplying the
# relative error of what comes before: measured 17x (T) to 150x (B) the eval-mode error,
# which sits 10x (Zen 3) to 100x below LOGIT_REL.  7.8e-3 of the logit scale.
TRAIN_BN_GROWTH = 64
TRAIN_LOGIT_REL = LOGIT_REL * TRAIN_BN_GROWTH
# A pixel's class flips only where its two best logits lie closer than twice the rounding
# error (~1e-5 of the scale): such near-ties are rare (measured <= 2 per million pixels).
ARGMAX_MIN_AGREEMENT = 0.9999


def float64_logits(model, x):
    """Return the eval logits of a float64 copy of ``model`` for input ``x`` (numpy)."""
    model64 = copy.deepcopy(model).double().eval()
    x = torch.as_tensor(np.asarray(x)).double()
    with torch.inference_mode():
        return model64(x).numpy()


def relative_error(candidate, reference):
    """Return max|candidate - reference| / max|reference|, computed in float64."""
    reference = np.asarray(reference, np.float64)
    diff = np.abs(np.asarray(candidate, np.float64) - reference)
    return float(diff.max() / np.abs(reference).max())


def assert_logits_close(candidate, reference, what, rel=LOGIT_REL):
    """Assert max|candidate - reference| <= rel * max|reference|; return the ratio."""
    assert np.shape(candidate) == np.shape(reference), (
        f'{what}: shape {np.shape(candidate)}, reference {np.shape(reference)}')
    error = relative_error(candidate, reference)
    print(f'\n[logits] {what}: max|diff| / max|reference| = {error:.2e} (bound {rel:.1e})')
    assert error <= rel, (f'{what}: max|diff| is {error:.2e} of the logit scale, more than '
                          f'{rel:.1e}')
    return error


def assert_confidence_close(candidate, reference, logit_scale, what, rel=LOGIT_REL):
    """
    Assert max softmax probabilities agree as far as logits within rel * logit_scale allow.

    The largest probability p moves by at most 2 p (1 - p) <= 1/2 times the largest logit
    change, so the bound is rel * logit_scale / 2.
    """
    bound = 0.5 * rel * logit_scale
    diff = float(np.abs(np.asarray(candidate, np.float64) - reference).max())
    print(f'\n[confidence] {what}: max|diff| = {diff:.2e} (bound {bound:.1e})')
    assert diff <= bound, f'{what}: confidence differs by {diff:.2e}, more than {bound:.1e}'


def argmax_agreement(candidate, reference, axis=1):
    """Return the fraction of pixels whose class (argmax over ``axis``) is the same."""
    return float((np.argmax(candidate, axis) == np.argmax(reference, axis)).mean())
