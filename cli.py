"""Run anybind from a checkout: ``python cli.py embed ...`` (same as the ``anybind`` command)."""
from binder.cli import main

if __name__ == "__main__":
    main()
