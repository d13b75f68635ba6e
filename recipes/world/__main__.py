"""``python -m recipes.world FOLDER [--small] [--seed N] [--workers N]``: build (or reuse) a world."""
from recipes.world.build import main

raise SystemExit(main())
