"""The fusion gate set on val pairs after training (binder.train.gate)."""
from __future__ import annotations

import math

import pytest
import torch

from binder.config import BindConfig, ModalityConfig
from binder.errors import ConfigError
from binder.model import BindingModel
from binder.train.evaluate import embed_tensor
from binder.train.gate import choose_gate, fuse, pair_loss, simplex_grid
from binder.train.recipe import TrainConfig

SMALL = {"num_frames": 4, "image_size": 32, "tubelet": [2, 8, 8]}


@pytest.fixture(scope="module")
def two_stream():
    torch.manual_seed(0)
    m = BindingModel(BindConfig(modalities=(ModalityConfig("two_stream", SMALL),), seed=0)).eval()
    x = torch.randn(12, 6, 4, 32, 32)
    alone = {}
    for s in ("rgb", "flow"):
        with m.single_stream("two_stream", s):
            alone[s] = embed_tensor(m, "two_stream", x)
    return m, x, alone


def test_the_grid_covers_the_simplex_including_each_stream_alone():
    two, three = simplex_grid(2), simplex_grid(3)
    assert len(two) == 21 and len(three) == 231 and len(simplex_grid(2, 4)) == 5
    assert all(math.isclose(sum(w), 1.0) and min(w) >= 0 for w in two + three)
    assert {(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)} <= set(two) and (0.0, 0.0, 1.0) in three


@pytest.mark.parametrize("best", ["rgb", "flow"])
def test_the_gate_goes_to_the_stream_whose_vectors_find_their_targets(two_stream, best):
    """Targets that are one stream's own vectors: that stream alone has the lowest pair loss, so the
    gate gives it (nearly) all the weight, and the fused vector then equals that stream's."""
    m, x, alone = two_stream
    head = m.heads["two_stream"]
    head.set_weight("rgb", 0.5)
    info = choose_gate(m, "two_stream", x, alone[best], torch.arange(len(x)))
    assert info["chosen"][best] > 0.999 and info["learned"] == {"rgb": 0.5, "flow": 0.5}
    loss = info["val_loss"]
    assert loss["chosen"] <= min(loss["learned"], *loss["streams"].values()) + 1e-6
    assert math.isclose(loss["chosen"], loss["streams"][best], rel_tol=1e-4)
    with torch.no_grad():
        assert torch.allclose(embed_tensor(m, "two_stream", x), alone[best], atol=1e-4)


def test_a_mix_wins_where_the_targets_are_a_mix(two_stream):
    m, x, alone = two_stream
    targets = fuse([alone["rgb"], alone["flow"]], (0.3, 0.7))
    info = choose_gate(m, "two_stream", x, targets, torch.arange(len(x)))
    assert info["chosen"]["flow"] == pytest.approx(0.7, abs=0.051)
    scale = float(m.heads["two_stream"].logit_scale.detach())
    assert pair_loss(targets, targets, torch.arange(len(x)), scale) <= info["val_loss"]["streams"]["rgb"]


def test_set_weights_refuses_what_is_not_a_gate(two_stream):
    head = two_stream[0].heads["two_stream"]
    for bad in ({"rgb": 1.0}, {"rgb": 0.7, "flow": 0.7}, {"rgb": 1.2, "flow": -0.2}):
        with pytest.raises(ValueError, match="summing to 1"):
            head.set_weights(bad)
    with pytest.raises(ConfigError, match="fusion_gate"):
        TrainConfig(fusion_gate="mean")
    with pytest.raises(TypeError, match="one stream"):
        choose_gate(BindingModel(BindConfig(modalities=(ModalityConfig("video", SMALL),), seed=0)), "video",
                    torch.randn(2, 3, 4, 32, 32), torch.randn(2, 8), torch.arange(2))
