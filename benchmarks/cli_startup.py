"""Start-up time of the ``anybind`` commands that embed nothing: --help, listings, index inspection.

Each command runs ``--runs`` times, each time in a fresh process started the way a shell starts it
(the ``anybind`` console script next to this Python, else ``python cli.py``); the wall time of the
whole process is measured, and the best and the median are kept. One more run per command, in
process under ``python -c``, counts the modules it imported and says whether torch or numpy was
among them. ``index info`` and ``index verify`` read a three-row index written here with
IndexWriter; ``models`` lists against an empty cache ($ANYBIND_HOME in a temp folder). Prints a
markdown table and writes benchmarks/results/cli_startup.json.

    python benchmarks/cli_startup.py                 # 10 runs of every command
    python benchmarks/cli_startup.py --runs 3        # quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))

from samplegen import text_index  # noqa: E402

INDEX = "{index}"  # replaced by the small index's folder
COMMANDS = (
    ["--help"],
    ["--version"],
    ["search", "--help"],
    ["index", "build", "--help"],
    ["models"],
    ["presets"],
    ["index", "info", INDEX],
    ["index", "verify", INDEX],
)

# The command in process: what it left imported (its exit code must be 0).
MODULES = """
import contextlib, io, json, sys
sys.argv = ["anybind", *json.loads(sys.argv[1])]
from binder.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, exc.code
print(json.dumps({"modules": len(sys.modules), "torch": "torch" in sys.modules, "numpy": "numpy" in sys.modules}))
"""


def entry_point() -> list[str]:
    """``anybind`` as a shell runs it: the console script of this environment, else ``python cli.py``."""
    script = Path(sys.executable).with_name("anybind")
    return [str(script)] if script.is_file() else [sys.executable, str(ROOT / "cli.py")]


def wall_times(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Seconds of each of ``runs`` fresh processes of ``argv``, start to exit."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
        out.append(time.perf_counter() - t)
        if done.returncode:
            sys.exit(f"{' '.join(argv)}: exit code {done.returncode}: {done.stderr.strip()}")
    return out


def measure(args: list[str], runs: int, env: dict[str, str]) -> dict:
    times = wall_times([*entry_point(), *args], runs, env)
    done = subprocess.run([sys.executable, "-c", MODULES, json.dumps(args)], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return {"best_s": round(min(times), 4), "median_s": round(statistics.median(times), 4),
            **json.loads(done.stdout)}


def markdown(rows: dict[str, dict]) -> str:
    lines = ["| command | best s | median s | modules | torch | numpy |", "|---|---:|---:|---:|---|---|"]
    for name, r in rows.items():
        lines.append(f"| `{name}` | {r['best_s']:.3f} | {r['median_s']:.3f} | {r['modules']} | "
                     f"{'yes' if r['torch'] else 'no'} | {'yes' if r['numpy'] else 'no'} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="fresh processes per command")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cli_startup.json"))
    args = ap.parse_args()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="anybind-cli-startup-") as tmp:
        index = str(text_index(Path(tmp)))
        env = {**os.environ, "ANYBIND_HOME": str(Path(tmp) / "home")}
        for command in COMMANDS:
            argv = [index if a == INDEX else a for a in command]
            name = "anybind " + " ".join("IDX" if a == INDEX else a for a in command)
            rows[name] = measure(argv, args.runs, env)
            r = rows[name]
            print(f"  {name:<32} best {r['best_s']:.3f} s  median {r['median_s']:.3f} s  {r['modules']} modules"
                  f"{'  torch' if r['torch'] else ''}{'  numpy' if r['numpy'] else ''}", flush=True)
    bare = min(wall_times([sys.executable, "-c", "pass"], args.runs, dict(os.environ)))  # the floor
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
            "python": platform.python_version(), "runs": args.runs, "entry_point": " ".join(entry_point()),
            "bare_python_best_s": round(bare, 4),
            "timing": "wall time of a fresh process, start to exit; best and median of the runs"}
    table = markdown(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "commands": rows, "table": table}, indent=2) + "\n")
    print("\n" + table)
    print(f"\nbare `python -c pass`: best {bare:.3f} s\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
