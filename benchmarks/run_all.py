#!/usr/bin/env python
"""The benchmark suite: every row of benchmarks/RESULTS.md, each speed figure a ratio measured side by side.

    .venv/bin/python benchmarks/run_all.py                 # everything, writes benchmarks/RESULTS.md (~15 min, 2 cores)
    .venv/bin/python benchmarks/run_all.py --quick         # smaller sizes, to try the script (not for RESULTS.md)

1. cold decode: the project's image-cache build vs a plain PIL open+convert+resize loop, on generated
   JPEGs with the competition's sizes paired with the real Ids of ../shared/data/pawpularity-train-labels.csv
2. embedding extraction: cache -> loader -> model, vs the model alone on tensors already in memory
3. training step: a stage-1 epoch (Lightning, augmentations, loader) vs bare forward+backward+step
4. SVR backends on a fold-sized problem (benchmarks/bench_svr.py)
5. the demo end to end: wall time and peak RSS
6. quality on ../shared/data/oxford-pets-370: OOF and test RMSE next to the mean baseline

Measurements that need their own peak memory run in a subprocess of this script (--part NAME).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
WORK = ROOT / "artifacts" / "bench"
PY = sys.executable


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- parts run in their own process
def make_competition_jpegs(out: Path, n: int) -> list[Path]:
    """n JPEGs named by the real competition Ids, sized like the competition photos (cached on disk)."""
    import cv2
    import numpy as np
    import pandas as pd
    from concurrent.futures import ThreadPoolExecutor

    ids = pd.read_csv(SHARED / "pawpularity-train-labels.csv")["Id"].tolist()[:n]
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    # Competition photos: width mean 804 (90..1280), height mean 904 (113..1280); most are 720-1280 px.
    widths = np.clip(rng.normal(804, 250, n), 90, 1280).astype(int)
    heights = np.clip(rng.normal(904, 250, n), 113, 1280).astype(int)

    def write(i: int) -> None:
        path = out / f"{ids[i]}.jpg"
        if path.exists():
            return
        r = np.random.default_rng(i)
        small = r.integers(0, 256, size=(max(2, heights[i] // 32), max(2, widths[i] // 32), 3), dtype=np.uint8)
        img = cv2.resize(small, (int(widths[i]), int(heights[i])), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, r.integers(0, 12, size=img.shape, dtype=np.uint8))  # sensor-like noise
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write, range(n)))
    return [out / f"{i}.jpg" for i in ids]


def part_decode_project(n: int, size: int) -> dict:
    from pawcore.images import cached_images

    paths = make_competition_jpegs(WORK / "jpegs", n)
    cache = WORK / "decode-cache"
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    pixels = cached_images(paths, size, cache, "bench")
    seconds = time.perf_counter() - t0
    assert pixels.shape == (n, size, size, 3)
    return {"images_per_s": n / seconds, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def part_decode_pil(n: int, size: int) -> dict:
    import numpy as np
    from PIL import Image

    paths = make_competition_jpegs(WORK / "jpegs", n)
    out = np.empty((n, size, size, 3), np.uint8)  # the same result held in memory
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
    seconds = time.perf_counter() - t0
    return {"images_per_s": n / seconds, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def part_embed(n: int, size: int, batch: int) -> dict:
    import numpy as np
    import torch

    from stage1_backbone.model import PawpularityNet
    from stage1_backbone.predict import embed_and_score
    from stage1_backbone.pretrained import create_backbone

    model = PawpularityNet(create_backbone("tf_efficientnet_lite0", "auto")).eval()
    pixels = np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    np.save(WORK / "embed-pixels.npy", pixels)
    cached = np.load(WORK / "embed-pixels.npy", mmap_mode="r")   # the pipeline's path reads a memmap
    tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()

    def bare() -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                model.embed(tensor[i:i + batch])
            return time.perf_counter() - t0

    def pipeline() -> float:
        t0 = time.perf_counter()
        embed_and_score(model, cached, batch_size=batch, device="cpu")
        return time.perf_counter() - t0

    bare(), pipeline()  # warm-up
    t_bare, t_pipe = [], []
    for _ in range(3):  # interleaved, best of 3: these machines are noisy
        t_bare.append(bare())
        t_pipe.append(pipeline())
    return {"bare_images_per_s": n / min(t_bare), "pipeline_images_per_s": n / min(t_pipe),
            "ratio": min(t_bare) / min(t_pipe)}


def part_train(n: int, size: int, batch: int, workers: int) -> dict:
    from common import part_train as train_rates

    bare, pipe = train_rates(WORK / "train-pixels.npy", n, size, batch, [workers], device="cpu", pretrained="auto",
                             epochs=1, warmup=0)
    return {"bare_images_per_s": bare, "pipeline_images_per_s": pipe[workers], "ratio": pipe[workers] / bare}


PARTS = {"decode-project": part_decode_project, "decode-pil": part_decode_pil, "embed": part_embed,
         "train": part_train}


def run_part(name: str, **kwargs) -> dict:
    """Run one part in a fresh Python process (its own peak RSS, no warm caches from other parts)."""
    out = subprocess.run([PY, __file__, "--part", name, "--kwargs", json.dumps(kwargs)], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"part {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


MEASURE = """import resource, subprocess, sys, time
t0 = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode
print(f"@@ {time.perf_counter() - t0} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}")
sys.exit(rc)"""


def timed_command(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the command's largest process, and its stdout.

    Measured by a fresh wrapper process, so earlier benchmarks' children do not count.
    """
    out = subprocess.run([PY, "-c", MEASURE, *cmd], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    seconds, rss = out.stdout.strip().splitlines()[-1].split()[1:]
    return float(seconds), float(rss), out.stdout


def overall_row(stdout: str, label: str) -> list[str]:
    """The 'overall' row of the last table printed under `label`."""
    block = stdout[stdout.rindex(label):]
    header = next(line for line in block.splitlines() if "mean baseline" in line)
    row = next(line for line in block.splitlines() if line.strip().startswith("overall"))
    return re.split(r"\s{2,}", header.strip()), re.split(r"\s+", row.strip())


# ---------------------------------------------------------------- the suite, one row each
def decode_row(n: int) -> str:
    proj = run_part("decode-project", n=n, size=224)
    pil = run_part("decode-pil", n=n, size=224)
    return (f"| 1 | cold decode, {n} competition-sized JPEGs -> 224 px | project cache build "
            f"{proj['images_per_s']:.0f} img/s, peak RSS {proj['peak_rss_mb']:.0f} MB | plain PIL loop "
            f"{pil['images_per_s']:.0f} img/s, peak RSS {pil['peak_rss_mb']:.0f} MB | "
            f"{proj['images_per_s'] / pil['images_per_s']:.2f}x | faster than PIL |")


def embed_row(n: int) -> str:
    emb = run_part("embed", n=n, size=224, batch=64)
    return (f"| 2 | embedding extraction, tf_efficientnet_lite0 224 px, CPU | pipeline "
            f"{emb['pipeline_images_per_s']:.1f} img/s | bare model on in-memory tensors "
            f"{emb['bare_images_per_s']:.1f} img/s | {emb['ratio']:.2f} | >= 0.90 |")


def train_row(n: int) -> str:
    tr = run_part("train", n=n, size=224, batch=32, workers=-1)
    return (f"| 3 | training epoch, tf_efficientnet_lite0 224 px, CPU, default (auto) workers | pipeline "
            f"{tr['pipeline_images_per_s']:.1f} img/s | bare forward+backward+step {tr['bare_images_per_s']:.1f} "
            f"img/s | {tr['ratio']:.2f} | >= 0.85 |")


def svr_row(rows: int) -> str:
    _, _, svr_out = timed_command([PY, "benchmarks/bench_svr.py", "--rows", str(rows)])
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in svr_out.splitlines() if line.startswith("| sk") or line.startswith("| cuml")}
    if "sklearnex" not in table:
        return f"| 4 | SVR fit, {rows} x 1280 | sklearn {table['sklearn'][0]} s | (sklearnex not installed) | | |"
    return (f"| 4 | SVR fit, {rows} x 1280 float32, C=20 | sklearnex {table['sklearnex'][0]} s | sklearn "
            f"{table['sklearn'][0]} s | {table['sklearnex'][1]} faster; RMSE diff {table['sklearnex'][3]} | "
            f"RMSE diff <= 0.05 |")


def demo_row() -> str:
    demo_dir = WORK / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    secs, rss, _ = timed_command([PY, "pipeline.py", "demo", "--artifacts-dir", str(demo_dir)])
    return (f"| 5 | demo end to end (generate, train-backbone, fit-svr, infer) | {secs:.0f} s wall, peak RSS "
            f"{rss:.0f} MB | | | about 3 min |")


def quality_row() -> str:
    """The README's oxford commands, then the submission scored against the held-out labels."""
    d, art = str(SHARED / "oxford-pets-370"), str(WORK / "oxford")
    shutil.rmtree(art, ignore_errors=True)
    common = ["--artifacts-dir", art, "--run", "oxford"]
    timed_command([PY, "pipeline.py", "train-backbone", "--data-dir", d, *common, "--img-size", "160", "--epochs", "3"])
    timed_command([PY, "pipeline.py", "fit-svr", *common])
    _, _, inf = timed_command([PY, "pipeline.py", "infer", "--data-dir", d, *common, "--blend", "0.5"])
    _, _, score = timed_command([PY, "benchmarks/score_submission.py", f"{art}/oxford/submission.csv",
                                 f"{d}/test_labels.csv", "--train-csv", f"{d}/train.csv"])
    header, overall = overall_row(inf, "OOF RMSE")
    oof = dict(zip(header[1:], overall[1:]))
    test = re.search(r"test RMSE ([\d.]+)", score).group(1)
    base = re.search(r"mean baseline .* test RMSE ([\d.]+)", score).group(1)
    return (f"| 6 | quality, oxford-pets-370 (320 train / 50 test, 160 px, 3 epochs, 5 folds) | OOF RMSE: NN "
            f"{oof['NN head']}, SVR {oof['SVR head']}, blend 0.5 {oof['blend 0.50']}; test RMSE (blend) {test} | "
            f"mean baseline: OOF {oof['mean baseline']}, test {base} | | below baseline |")


def suite_rows(quick: bool) -> Iterator[str]:
    """The RESULTS.md table, a row at a time as each is measured."""
    yield "| # | benchmark | measured | baseline (same run) | ratio | goal |"
    yield "|---|---|---|---|---|---|"
    yield decode_row(400 if quick else 9912)
    yield embed_row(128 if quick else 512)
    yield train_row(64 if quick else 256)
    yield svr_row(2000 if quick else 8921)
    yield demo_row()
    if (SHARED / "oxford-pets-370").is_dir() and not quick:
        yield quality_row()


def write_results(rows: list[str], started: dt.datetime) -> None:
    """benchmarks/RESULTS.md: this run's table, then the GPU section from bench_gpu.py kept as it was."""
    import torch

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, no GPU")
    text = "\n".join([
        "# Benchmark results", "",
        f"Command: `.venv/bin/python benchmarks/run_all.py` (started {started.isoformat(timespec='minutes')}).",
        f"Machine: {machine}; Python {platform.python_version()}, torch {torch.__version__}.", "",
        "Each ratio compares two measurements taken in the same run (interleaved where repeated), because",
        "these machines are noisy. GPU rows: the GPU section below (benchmarks/bench_gpu.py, kept as it is here).",
        "Row 1's peak RSS counts the pages of the memory-mapped cache file (N x 224 x 224 x 3 bytes), which",
        "the kernel can drop at will; the PIL loop holds the same pixels in ordinary memory.", "",
        *rows, "",
    ])
    results = ROOT / "benchmarks" / "RESULTS.md"
    old = results.read_text() if results.is_file() else ""
    if "\n## GPU" in old:  # measured on a lent GPU by bench_gpu.py: keep it
        text += old[old.index("\n## GPU"):]
    results.write_text(text)
    print(f"wrote {results}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=sorted(PARTS))
    p.add_argument("--kwargs", default="{}")
    p.add_argument("--quick", action="store_true", help="small sizes; prints, does not write RESULTS.md")
    args = p.parse_args()
    if args.part:  # one measurement in this fresh process, called by run_part
        print(json.dumps(PARTS[args.part](**json.loads(args.kwargs))))
        return 0

    WORK.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    rows = []
    for row in suite_rows(args.quick):
        print(row, flush=True)
        rows.append(row)
    if not args.quick:
        write_results(rows, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
