"""Running the ``anybind`` console entry point in process, as a user's shell would."""
from __future__ import annotations

import sys

from binder.cli import main


def run_cli(args: list[str], capfd) -> tuple[int, str, str]:
    """``anybind ARGS`` through the console entry point, in process: (exit code, stdout, stderr)."""
    old, code = sys.argv, 0
    sys.argv = ["anybind", *args]
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out, err = capfd.readouterr()
    return code, out, err
