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
Export PaddleSeg's own PP-LiteSeg to ONNX the way PaddleSeg deploys it (paddle2onnx).

Runs in the PaddleSeg reference venv (not the project venv): builds the real PPLiteSeg with the
parity test's seeded weights, saves them as ``model.pdparams`` (for our converter), exports a
fixed-shape static graph with ``paddle.jit.save`` and converts it with paddle2onnx.
"""

import argparse
from pathlib import Path
import subprocess
import sys

import paddle

REFERENCE_DIR = Path(__file__).resolve().parents[1] / 'test' / 'paddle_reference'


class LogitsOnly(paddle.nn.Layer):
    """Return the eval logits tensor (PaddleSeg models return a list)."""

    def __init__(self, model):
        """Wrap ``model``."""
        super().__init__()
        self.model = model

    def forward(self, x):
        """Run the model."""
        return self.model(x)[0]


def main():
    """Export; print the ONNX path."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--variant', choices=['t', 'b'], default='t')
    parser.add_argument('--num-classes', type=int, default=19)
    parser.add_argument('--height', type=int, default=512)
    parser.add_argument('--width', type=int, default=1024)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out-dir', required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(REFERENCE_DIR))
    from make_reference import build_model, fill_parameters

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paddle.set_device('cpu')
    model = build_model(args.variant, args.num_classes)
    fill_parameters(model, args.seed)
    model.eval()
    paddle.save(model.state_dict(), str(out / 'model.pdparams'))
    spec = paddle.static.InputSpec(shape=[1, 3, args.height, args.width], dtype='float32')
    static = paddle.jit.to_static(LogitsOnly(model), input_spec=[spec])
    paddle.jit.save(static, str(out / 'inference'))
    graph = 'inference.json' if (out / 'inference.json').exists() else 'inference.pdmodel'
    subprocess.run([sys.executable, '-m', 'paddle2onnx.command', '--model_dir', str(out),
                    '--model_filename', graph, '--params_filename', 'inference.pdiparams',
                    '--save_file', str(out / 'paddle.onnx'), '--opset_version', '11'],
                   check=True, stdout=subprocess.DEVNULL)
    print(out / 'paddle.onnx')


if __name__ == '__main__':
    main()
