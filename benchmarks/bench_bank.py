#!/usr/bin/env python
"""fit-svr with the feature bank (the default) vs the single fine-tuned source, from one run.

    .venv/bin/python benchmarks/bench_bank.py --art /tmp/bank-bench          # trains stage 1 first if absent
    .venv/bin/python benchmarks/bench_bank.py --art /tmp/bank-bench --write  # and puts the rows in RESULTS.md

On ../shared/data/oxford-pets-370 with `train-backbone --img-size 160 --epochs 2` (trained once, shared by
both). Each fit-svr starts cold: the feature cache of every source, fine-tuned and frozen
(<art>/features) and the decoded images at the frozen models' sizes are removed first, so the time
includes every decode and forward pass (the decoded images at stage 1's size are kept: both read them). The bank is then run once more warm, to show what a second
fit-svr with other SVR settings costs. Prints markdown rows; --write replaces the bank section of
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "oxford-pets-370"
PY = sys.executable
SECTION = "\n## Stage-2 feature bank"


def run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([PY, "pipeline.py", *cmd], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0, out.stdout


def svr_oof(stdout: str) -> str:
    block = stdout[stdout.rindex("Stage 2 OOF RMSE"):]
    header = re.split(r"\s{2,}", next(line for line in block.splitlines() if "mean baseline" in line).strip())
    overall = re.split(r"\s+", next(line for line in block.splitlines() if line.strip().startswith("overall")).strip())
    return dict(zip(header, overall))["SVR head"]


def chosen(stdout: str) -> str:
    m = re.search(r"features (\S+), scaler (on|off)", stdout)
    return f"{m.group(1)}, scaler {m.group(2)}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--art", default=str(ROOT / "artifacts" / "bench-bank"), help="artifacts dir of the run")
    p.add_argument("--run", default="oxford")
    p.add_argument("--write", action="store_true", help="replace the bank rows in benchmarks/RESULTS.md")
    args = p.parse_args()
    art, common = Path(args.art), ["--artifacts-dir", args.art, "--run", args.run]
    if not (art / args.run / "stage1" / "manifest.json").is_file():
        secs, _ = run(["train-backbone", "--data-dir", str(DATA), *common, "--img-size", "160", "--epochs", "2"])
        print(f"stage 1 trained in {secs:.0f} s", flush=True)

    size = json.loads((art / args.run / "stage1" / "manifest.json").read_text())["model"]["img_size"]

    def cold() -> None:
        shutil.rmtree(art / "features", ignore_errors=True)
        for decoded in (art / "cache").glob("images-train-*px-*.npy"):  # frozen models' own sizes: decode again
            if f"-{size}px-" not in decoded.name:
                decoded.unlink()

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes")
    cold()
    # The single source as stage 2 was before the bank: the fine-tuned embedding, standardised.
    t_single, out_single = run(["fit-svr", *common, "--features", "tuned", "--select", "none", "--standardize"])
    cold()
    t_bank, out_bank = run(["fit-svr", *common])
    t_warm, out_warm = run(["fit-svr", *common])
    assert svr_oof(out_warm) == svr_oof(out_bank), "a warm re-run must give the same SVR"
    setting = "oxford-pets-370, stage 1 160 px 2 epochs, 5 folds, SVR C=20"
    rows = [
        "| # | benchmark | measured | baseline (same run) | ratio | goal |",
        "|---|---|---|---|---|---|",
        f"| B1 | fit-svr wall time, {setting}, cold caches | bank (default `--features auto --select auto`): "
        f"{t_bank:.0f} s | single source as before the bank (`--features tuned --select none --standardize`): "
        f"{t_single:.0f} s | "
        f"{t_bank / t_single:.1f}x | |",
        f"| B2 | fit-svr wall time, bank, second run (cached features) | {t_warm:.0f} s | bank cold {t_bank:.0f} s | "
        f"{t_warm / t_bank:.2f} | embeds nothing |",
        f"| B3 | SVR OOF RMSE, {setting} | bank {svr_oof(out_bank)} (chosen: {chosen(out_bank)}; slightly "
        f"optimistic: chosen on these rows) | single source {svr_oof(out_single)} ({chosen(out_single)}) | | "
        f"<= 9.25 |",
    ]
    print("\n".join(rows))
    if args.write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, no GPU"
        section = "\n".join([
            SECTION.strip(), "",
            f"Command: `.venv/bin/python benchmarks/bench_bank.py --write` (started {started}). Machine: {machine}, "
            f"shared with other jobs while measured (wall times are loaded-machine figures); Python "
            f"{platform.python_version()}.", "", *rows, ""])
        results = ROOT / "benchmarks" / "RESULTS.md"
        text = results.read_text()
        if SECTION in text:  # replace our section, keep what follows it
            head, rest = text.split(SECTION, 1)
            tail = rest[rest.index("\n## "):] if "\n## " in rest else ""
            text = head.rstrip("\n") + "\n\n" + section + tail
        else:  # at the end: run_all.py keeps everything from its "## GPU" section on
            text = text.rstrip("\n") + "\n\n" + section
        results.write_text(text)
        print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
