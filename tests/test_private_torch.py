"""The two private torch APIs anybind uses, each behind a comment where it is called: if a torch
release renames or changes one, this fails before a user meets it."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def test_vnni_probe_answers_a_bool():
    assert isinstance(torch.cpu._is_vnni_supported(), bool)  # binder/precision.py: fbgemm reduce_range


def test_ddp_keeps_the_named_parameters_out_of_its_buckets():
    module = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))  # binder/train/step.py: frozen weights
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ["0.weight", "0.bias"])
    assert set(module._ddp_params_and_buffers_to_ignore) == {"0.weight", "0.bias"}
