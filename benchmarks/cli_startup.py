#!/usr/bin/env python
"""Start-up time of `pipeline.py --help` and `pipeline.py status` against a bare `python -c "import argparse"`.

    .venv/bin/python benchmarks/cli_startup.py [--runs 15] [--ref COMMIT]

Each command runs --runs times, the commands interleaved (side by side, so load on a shared machine hits
them alike); the median wall time of each is printed with its ratio to the bare interpreter. `status` runs
on an empty artifacts dir (it exits 2: no runs). `--ref COMMIT` also times that commit's pipeline.py,
extracted with `git archive` into a temporary folder.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def wall(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="Runs of each command (default: 15).")
    parser.add_argument("--ref", default="", help="Also time this commit's pipeline.py (e.g. main).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty-artifacts"
        empty.mkdir()
        trees = {"": ROOT}
        if args.ref:
            trees[f" ({args.ref})"] = Path(tmp) / "ref"
            trees[f" ({args.ref})"].mkdir()
            archive = subprocess.run(["git", "archive", args.ref], cwd=ROOT, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(trees[f" ({args.ref})"])], input=archive, check=True)
        commands = {'python -c "import argparse"': ([PY, "-c", "import argparse"], ROOT)}
        for label, tree in trees.items():
            commands[f"pipeline.py --help{label}"] = ([PY, "pipeline.py", "--help"], tree)
            status = [PY, "pipeline.py", "status", "--artifacts-dir", str(empty)]
            commands[f"pipeline.py status{label}"] = (status, tree)
        for cmd, cwd in commands.values():
            wall(cmd, cwd)  # warm the file cache
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (cmd, cwd) in commands.items():
                times[name].append(wall(cmd, cwd))
    base = statistics.median(times['python -c "import argparse"'])
    print(f"{'command':<40} {'median ms':>10} {'x argparse':>11}   ({args.runs} runs each, interleaved)")
    for name, ts in times.items():
        print(f"{name:<40} {1000 * statistics.median(ts):>10.0f} {statistics.median(ts) / base:>11.1f}")


if __name__ == "__main__":
    main()
