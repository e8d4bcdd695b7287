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

"""Checkpoint format: round trip, weights-only loading, refusals that name the problem."""

from liteseg_ros.model import (build_model, CheckpointError, load_checkpoint, load_model,
                               save_checkpoint)
from liteseg_ros.model.checkpoint import FORMAT
import pytest
import torch


def test_round_trip_keeps_weights_config_and_outputs(tmp_path):
    model = build_model('t', 11, dataset='camvid').eval()
    path = tmp_path / 'camvid_t.pt'
    save_checkpoint(path, model)
    raw = torch.load(path, weights_only=True)  # plain types only
    assert raw['format'] == FORMAT
    assert raw['config']['class_names'][0] == 'Sky' and raw['config']['input_size'] == [720, 960]
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_wrong_class_count_is_refused_naming_both(tmp_path):
    path = tmp_path / 'city.pt'
    save_checkpoint(path, build_model('t', 19, dataset='cityscapes'))
    with pytest.raises(CheckpointError, match=r'expected num_classes 11.*has 19'):
        load_model(path, num_classes=11)


def test_wrong_variant_is_refused_naming_both(tmp_path):
    path = tmp_path / 'b.pt'
    save_checkpoint(path, build_model('b', 19))
    with pytest.raises(CheckpointError, match=r"expected variant 't'.*has 'b'"):
        load_model(path, variant='t')


def test_weights_that_disagree_with_their_config_are_refused(tmp_path):
    model = build_model('t', 11)
    checkpoint_config = dict(build_model('t', 19).config)
    path = tmp_path / 'mixed.pt'
    save_checkpoint(path, model, config=checkpoint_config)
    with pytest.raises(CheckpointError, match=r'weights are for 11 classes but the config says '
                                              r'num_classes=19'):
        load_model(path)


def test_variant_weights_mismatch_is_refused(tmp_path):
    path = tmp_path / 'b_as_t.pt'
    save_checkpoint(path, build_model('b', 19), config=build_model('t', 19).config)
    with pytest.raises(CheckpointError, match=r'PP-LiteSeg-T with 19 classes.*unexpected'):
        load_model(path)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / 'model.pt'
    save_checkpoint(path, build_model('t', 2))
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match='truncated.pt: not a readable'):
        load_checkpoint(truncated)
    foreign = tmp_path / 'foreign.pt'
    torch.save({'state_dict': {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: expected format 'liteseg/1'"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match='no such checkpoint'):
        load_checkpoint(tmp_path / 'absent.pt')


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / 'model.pt'
    model = build_model('t', 2)
    save_checkpoint(path, model)
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(path, model, extra=lambda: None)  # a lambda cannot be pickled
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['model.pt']
    load_model(path)


def test_inconsistent_config_is_refused():
    with pytest.raises(ValueError, match="dataset 'cityscapes' has 19 classes"):
        build_model('t', 11, dataset='cityscapes')
    with pytest.raises(ValueError, match="unknown variant 'x'"):
        build_model('x', 19)
