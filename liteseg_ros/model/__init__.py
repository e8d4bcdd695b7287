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

"""PP-LiteSeg in pure PyTorch: networks, factories and self-describing checkpoints."""

from liteseg_ros.model.checkpoint import (build_model, CheckpointError, load_checkpoint,
                                          load_model, make_config, model_from_config,
                                          save_checkpoint)
from liteseg_ros.model.pp_liteseg import (init_like_paddleseg, pp_liteseg_b, pp_liteseg_t,
                                          PPLiteSeg, VARIANTS)

__all__ = ['build_model', 'CheckpointError', 'init_like_paddleseg', 'load_checkpoint',
           'load_model', 'make_config', 'model_from_config', 'PPLiteSeg', 'pp_liteseg_b',
           'pp_liteseg_t', 'save_checkpoint', 'VARIANTS']
