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
Convert PaddleSeg PP-LiteSeg weights (and STDC ImageNet backbones) into liteseg checkpoints.

Runs without Paddle: a ``.pdparams`` file is a pickle of numpy arrays, read by an unpickler
that resolves only numpy's array-rebuilding globals, so a crafted file cannot run code. Every
key must map onto the model, with the right shape, or conversion fails naming it. The
conversion itself is ``liteseg_ros.model.paddle_weights``; ``liteseg weights get NAME``
downloads and converts the PaddleSeg model zoo's weights in one step.

Usage::

    python -m training.convert_paddle SRC.pdparams OUT.pt --variant t --num-classes 19 \\
        --dataset cityscapes
    python -m training.convert_paddle PP_STDCNet1.pdparams stdc1.pt --variant t --backbone-only
"""

import argparse
import sys

# The conversion lives in the package (``liteseg weights get`` uses it too); these names stay
# importable from here.
from liteseg_ros.model.paddle_weights import (  # noqa: F401
    BACKBONE_FORMAT, ConversionError, convert_backbone, convert_model, map_state_dict,
    NumpyOnlyUnpickler, paddle_to_liteseg_name, read_pdparams, read_torch_state_dict,
    read_weights)


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog='python -m training.convert_paddle', description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='PaddleSeg .pdparams (or STDC torch checkpoint)')
    parser.add_argument('out', help='output .pt checkpoint')
    parser.add_argument('--variant', choices=['t', 'b'], required=True,
                        help='t = PP-LiteSeg-T (STDC1), b = PP-LiteSeg-B (STDC2)')
    parser.add_argument('--num-classes', type=int, help='classes the weights were trained on')
    parser.add_argument('--dataset', default=None,
                        help='cityscapes or camvid: sets class names and palette')
    parser.add_argument('--backbone-only', action='store_true',
                        help='convert ImageNet backbone weights for training')
    args = parser.parse_args(argv)
    try:
        if args.backbone_only:
            backbone = convert_backbone(args.src, args.out, args.variant)
            print(f'wrote {args.out}: STDC{1 if args.variant == "t" else 2} backbone, '
                  f'{len(backbone)} tensors')
            return 0
        if args.num_classes is None:
            parser.error('--num-classes is required (19 for Cityscapes, 11 for CamVid)')
        model = convert_model(args.src, args.out, args.variant, args.num_classes, args.dataset)
    except (ConversionError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f'wrote {args.out}: PP-LiteSeg-{args.variant.upper()}, {args.num_classes} classes '
          f"({model.config['dataset']}), {params:,} trainable parameters")
    return 0


if __name__ == '__main__':
    sys.exit(main())
