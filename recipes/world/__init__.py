"""The offline world: a small, deterministic, cached set of paired multi-modal data built from real
data that ships inside registry packages (scikit-learn's handwritten digits, espeak-ng speech,
aeon's BasicMotions), plus depth, thermal, video and air-writing IMU rendered from the digits.

```python
from recipes.world import WorldConfig, build_world, read_world_manifest

info = build_world("out/world", WorldConfig.small())       # seconds; cached afterwards
rows = read_world_manifest(info.manifest("audio", "train"))       # absolute paths, label, caption, image
hard = info.rows("audio", "hard")    # held-out robustness split: unseen voices, noise, ... (row "condition")
```
"""
from recipes.world.build import WorldInfo, build_world, load_world
from recipes.world.config import HARD, SPLITS, WorldConfig
from recipes.world.manifest import manifest_path, read_world_manifest, write_manifest

__all__ = ["HARD", "SPLITS", "WorldConfig", "WorldInfo", "build_world", "load_world", "manifest_path",
           "read_world_manifest", "write_manifest"]
