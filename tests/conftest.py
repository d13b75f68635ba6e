import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_NUM_THREADS", "2")
# The suite never downloads: offline, hub look-ups fail at once instead of waiting out retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(2)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """The small offline world, built once per test session (about 20 s)."""
    from recipes.world.build import build_world
    from recipes.world.config import WorldConfig

    return build_world(tmp_path_factory.mktemp("world") / "small", WorldConfig.small(), progress=False)
