"""Training state goes through state_dict(): trees of tensors and plain values round-trip exactly."""
from __future__ import annotations

import pytest
import torch

from binder.errors import CheckpointError
from binder.train.loss import BindingLoss
from binder.train.state import join_state, load_train_state, save_train_state, split_state


def test_split_and_join_restore_the_exact_tree():
    tree = {"state": {0: {"exp_avg": torch.randn(3, 2), "step": torch.tensor(7.0)}},
            "param_groups": [{"lr": 0.1 + 1e-17, "betas": (0.9, 0.98), "params": [0, 1], "name": None}]}
    tensors: dict[str, torch.Tensor] = {}
    back = join_state(split_state(tree, tensors), tensors)
    assert list(back["state"]) == [0] and isinstance(back["param_groups"][0]["betas"], tuple)
    assert back["param_groups"][0]["lr"] == tree["param_groups"][0]["lr"]
    assert torch.equal(back["state"][0]["exp_avg"], tree["state"][0]["exp_avg"])


def test_loss_queue_round_trips_through_extra_state(tmp_path):
    torch.manual_seed(0)
    a, b = BindingLoss(8, memory_size=16), BindingLoss(8, memory_size=16)
    for _ in range(3):
        z = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
        a(z, z.flip(0), torch.arange(6), torch.tensor(10.0))
    save_train_state(tmp_path, {"loss": a}, {"step": 3})
    assert load_train_state(tmp_path, {"loss": b}) == {"step": 3}
    assert torch.equal(a.memory.embedding_memory, b.memory.embedding_memory)
    assert (a.memory.queue_idx, a.memory.has_been_filled) == (b.memory.queue_idx, b.memory.has_been_filled)
    with pytest.raises(CheckpointError, match="loss state does not fit"):
        load_train_state(tmp_path, {"loss": BindingLoss(8, memory_size=0)})
    with pytest.raises(CheckpointError, match="has no optimizer"):
        load_train_state(tmp_path, {"optimizer": torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)})
