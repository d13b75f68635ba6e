"""InfoNCE with soft labels from the anchor's own target similarities (``train.soft_targets``)."""
import pytest
import torch
import torch.nn.functional as F

from binder.errors import CheckpointError, ConfigError
from binder.train.loss import BindingLoss, SoftTargetLoss, make_loss
from binder.train.recipe import TrainConfig


def unit(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def direct(z: torch.Tensor, y: torch.Tensor, scale: float, tau: float) -> torch.Tensor:
    """The loss written out row by row: cross-entropy of each direction's logits against
    softmax(y_i·y_j / tau), averaged over rows and over the two directions."""
    terms = []
    for rows, cols in ((z, y), (y, z)):
        for i in range(len(z)):
            q = torch.softmax(torch.stack([y[i] @ y[j] for j in range(len(y))]) / tau, dim=0)
            logp = torch.log_softmax(torch.stack([scale * (rows[i] @ cols[j]) for j in range(len(y))]), dim=0)
            terms.append(-(q * logp).sum())
    return torch.stack(terms).mean()


def test_soft_loss_and_its_gradients_match_the_direct_computation():
    z, y = unit(6), unit(6, seed=1)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    s1, s2 = (torch.tensor(9.0, dtype=torch.float64, requires_grad=True) for _ in range(2))
    ours = SoftTargetLoss(8, temperature=0.2)(z1, y, torch.arange(6), s1)
    expected = direct(z2, y, s2, 0.2)
    assert torch.allclose(ours, expected, atol=1e-10)
    ours.backward()
    expected.backward()
    assert torch.allclose(z1.grad, z2.grad, atol=1e-10) and torch.allclose(s1.grad, s2.grad, atol=1e-10)


def test_a_cold_temperature_is_infonce_and_a_warm_one_spares_alike_targets():
    z, y = unit(8), unit(8, seed=1)
    ids, scale = torch.arange(8), torch.tensor(10.0, dtype=torch.float64)
    hard = BindingLoss(8)(z.float(), y.float(), ids, scale.float())
    assert torch.allclose(SoftTargetLoss(8, temperature=1e-3)(z, y, ids, scale).float(), hard, atol=1e-4)
    # Two targets the anchor finds nearly alike; the embedding of the first lands on the second.
    y = unit(4, seed=2)
    y[1] = F.normalize(y[0] + 0.05 * unit(1, seed=3)[0], dim=0)
    z = y.clone()
    z[0] = y[1]
    ids = torch.arange(4)
    warm = SoftTargetLoss(8, temperature=0.1)(z, y, ids, scale)
    exact = SoftTargetLoss(8, temperature=0.1)(y, y, ids, scale)
    cold = SoftTargetLoss(8, temperature=1e-3)(z, y, ids, scale)
    assert warm - exact < 0.1 * (cold - SoftTargetLoss(8, temperature=1e-3)(y, y, ids, scale))


def test_the_queue_adds_soft_labelled_columns_and_round_trips():
    z, y = unit(4), unit(4, seed=1)
    scale = torch.tensor(10.0, dtype=torch.float64)
    loss = SoftTargetLoss(8, memory_size=6, temperature=0.1)
    first = loss(z, y, torch.arange(4), scale)
    second = loss(z, y, torch.arange(4, 8), scale)  # 4 queued targets (the same vectors) now share the mass
    assert not torch.isclose(first, second)
    copy = SoftTargetLoss(8, memory_size=6, temperature=0.1)
    copy.load_state_dict(loss.state_dict())
    args = (z, unit(4, seed=5), torch.arange(8, 12), scale)
    assert torch.equal(copy(*args), loss(*args))
    with pytest.raises(CheckpointError, match="memory queue of shape"):
        SoftTargetLoss(8, memory_size=5, temperature=0.1).load_state_dict(loss.state_dict())


def test_make_loss_and_the_train_config_pick_and_check_it():
    assert isinstance(make_loss("infonce", 8, soft_targets=0.05), SoftTargetLoss)
    assert isinstance(make_loss("infonce", 8), BindingLoss)
    assert TrainConfig(soft_targets=0.05).soft_targets == 0.05
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="soft_targets must be in"):
            TrainConfig(soft_targets=bad)
    with pytest.raises(ConfigError, match="InfoNCE option"):
        TrainConfig(loss="siglip", soft_targets=0.05)
    with pytest.raises(ConfigError, match="InfoNCE option"):
        make_loss("siglip", 8, soft_targets=0.05)
    with pytest.raises(ConfigError, match="soft_targets must be in"):
        SoftTargetLoss(8, temperature=0.0)
