"""Fixtures for the index tests: the untrained default model and fresh builds to compare with."""
from __future__ import annotations

import pytest
from index_helpers import QUIET, state

from binder.index.build import build_index
from binder.model import BindingModel


@pytest.fixture(scope="session")
def model() -> BindingModel:
    return BindingModel.default().eval()


@pytest.fixture
def fresh(tmp_path_factory, model):
    """``fresh(*paths)``: the state of a brand-new index built from ``paths``."""
    def build(*paths) -> dict:
        folder = tmp_path_factory.mktemp("fresh") / "idx"
        build_index(folder, paths, model=model, options=QUIET)
        return state(folder)
    return build
