"""SigLIP's sigmoid loss: against a direct computation, its chunked (per-rank) form, the queue, recipes."""
import math

import pytest
import torch
import torch.nn.functional as F

from binder.errors import AnybindError, CheckpointError
from binder.train.loss import SIGLIP_BIAS, SigmoidLoss, make_loss


def direct(z: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, t: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The paper's formula written out pair by pair."""
    total = z.new_zeros(())
    for i in range(len(z)):
        for j in range(len(y)):
            label = 1.0 if ids[i] == ids[j] else -1.0
            total = total - torch.log(torch.sigmoid(label * (t * (z[i] @ y[j]) + b)))
    return total / len(z)


def batch(n: int = 6, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    y = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    return z, y


@pytest.mark.parametrize("ids", [list(range(6)), [0, 1, 1, 2, 0, 3]])  # distinct, and shared targets
def test_sigmoid_loss_and_its_gradients_match_the_direct_computation(ids):
    z, y = batch()
    ids = torch.tensor(ids)
    loss = SigmoidLoss(8).double()
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    t1, t2 = torch.tensor(7.0, dtype=torch.float64, requires_grad=True), torch.tensor(7.0, dtype=torch.float64,
                                                                                      requires_grad=True)
    b2 = torch.tensor(SIGLIP_BIAS, dtype=torch.float64, requires_grad=True)
    ours, expected = loss(z1, y, ids, t1), direct(z2, y, ids, t2, b2)
    assert torch.allclose(ours, expected, atol=1e-10)
    ours.backward()
    expected.backward()
    assert torch.allclose(z1.grad, z2.grad, atol=1e-10)
    assert torch.allclose(t1.grad, t2.grad, atol=1e-10) and torch.allclose(loss.bias.grad, b2.grad, atol=1e-10)
    assert ours > 0 and loss.bias.grad != 0


def test_the_chunked_form_adds_up_to_the_whole_batch():
    """Each rank's rows against every target, summed over ranks = the single-process loss and gradient."""
    z, y = batch(n=7)
    ids = torch.tensor([0, 1, 2, 2, 3, 4, 5])
    whole_fn, z_whole = SigmoidLoss(8).double(), z.clone().requires_grad_()
    whole = whole_fn(z_whole, y, ids, torch.tensor(10.0, dtype=torch.float64))
    whole.backward()
    parts, grads, bias_grad = [], [], 0.0
    for lo, hi in ((0, 3), (3, 5), (5, 7)):  # three ranks with uneven shares
        fn, zr = SigmoidLoss(8).double(), z[lo:hi].clone().requires_grad_()
        part = fn(zr, y, ids, torch.tensor(10.0, dtype=torch.float64), rows=(lo, 7))
        part.backward()
        parts.append(part)
        grads.append(zr.grad)
        bias_grad += float(fn.bias.grad)
    assert torch.allclose(sum(parts), whole, atol=1e-12)
    assert torch.allclose(torch.cat(grads), z_whole.grad, atol=1e-12)
    assert math.isclose(bias_grad, float(whole_fn.bias.grad), abs_tol=1e-12)


def test_the_queue_adds_past_targets_as_negatives_and_round_trips():
    z, y = batch(n=4)
    loss = SigmoidLoss(8, memory_size=6).double()
    first = loss(z, y, torch.arange(4), torch.tensor(10.0, dtype=torch.float64))
    second = loss(z, y, torch.arange(4, 8), torch.tensor(10.0, dtype=torch.float64))  # 4 queued negatives now
    assert second > first
    copy = SigmoidLoss(8, memory_size=6).double()
    copy.load_state_dict(loss.state_dict())
    args = (z, y, torch.arange(8, 12), torch.tensor(10.0, dtype=torch.float64))
    assert torch.equal(copy(*args), loss(*args))
    with pytest.raises(CheckpointError, match="memory queue of shape"):
        SigmoidLoss(8, memory_size=5).load_state_dict(loss.state_dict())


def test_recipes_pick_the_loss_and_siglip_starts_at_the_papers_values(tmp_path):
    from binder.train.recipe import load_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\nloss = "siglip"\n[[modality]]\nname = "depth"\ntrain = "x.jsonl"\n')
    rec = load_recipe(recipe)
    assert rec.train.loss == "siglip" and rec.bind.modality("depth").head.logit_scale == 10.0  # t' = log 10
    assert float(make_loss("siglip", 8).bias.detach()) == -10.0
    assert load_recipe(recipe, {"train.loss": "infonce"}).bind.modality("depth").head.logit_scale != 10.0
    with pytest.raises(AnybindError, match="train.loss"):
        load_recipe(recipe, {"train.loss": "triplet"})
