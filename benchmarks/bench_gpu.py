#!/usr/bin/env python
"""The GPU rows of benchmarks/RESULTS.md, each speed figure a ratio measured side by side in one run.

    python benchmarks/bench_gpu.py --parts embed,train,precision --out DIR   # one JSON line per row -> DIR/gpu.jsonl
    python benchmarks/bench_gpu.py --parts svr,decode,speed --out DIR
    python benchmarks/bench_gpu.py --parts e2e --oxford PATH --out DIR
    python benchmarks/bench_gpu.py --report DIR/gpu.jsonl [more.jsonl ...]    # -> the markdown GPU section

Parts (each needs a CUDA GPU except svr and decode):
  embed      embedding extraction: the pipeline (memmap cache -> loader -> model) vs the bare model on
             uint8 tensors already on the GPU, same precision
  train      a stage-1 epoch through Lightning (loaders, augmentation, bf16-mixed, channels_last) vs a bare
             forward+backward+step loop on tensors already on the GPU
  precision  bare training step: fp32 vs bf16 autocast, channels_last on/off, torch.compile on/off
  svr        benchmarks/bench_svr.py (sklearn vs sklearnex on all cores, and cuML when importable)
  decode     the image-cache build (all cores) vs a plain PIL loop, 9,912 competition-sized JPEGs
  speed      stage 1 at competition settings on those 9,912 photos: images/s and s/epoch
  ingredients  stage 1 with --ema and --accumulate on vs off (convnext_base, 384 px, batch 32): images/s,
             each a ratio to the plain loop timed before and after it in the same run
  e2e        `pipeline.py demo` and the README's oxford commands, wall time on the GPU
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
PY = sys.executable
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/bench"))

from common import BACKBONE, bare_train, bf16_autocast, clock, new_model, quiet_lightning, quiet_trainer  # noqa: E402
from common import part_train as train_rates  # noqa: E402


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def part_embed(n: int = 8192, size: int = 224, batch: int = 256) -> list[dict]:
    import numpy as np
    import torch

    from stage1_backbone.model import PawpularityNet
    from stage1_backbone.predict import embed_and_score
    from stage1_backbone.pretrained import create_backbone

    WORK.mkdir(parents=True, exist_ok=True)
    model = PawpularityNet(create_backbone(BACKBONE, "none")).eval().cuda()
    pixels = np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    np.save(WORK / "embed.npy", pixels)
    cached = np.load(WORK / "embed.npy", mmap_mode="r")
    on_gpu = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().cuda()

    def bare() -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode(), bf16_autocast():
            for i in range(0, n, batch):
                model.embed(on_gpu[i:i + batch]).float()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    def pipeline(workers: int) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        embed_and_score(model, cached, batch_size=batch, device="cuda", num_workers=workers)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    bare(), pipeline(0), pipeline(8)  # warm-up (cudnn autotune, worker start)
    t = {"bare": [], "pipe0": [], "pipe8": []}
    for _ in range(3):  # interleaved, best of 3
        t["bare"].append(bare())
        t["pipe0"].append(pipeline(0))
        t["pipe8"].append(pipeline(8))
    best = {k: n / min(v) for k, v in t.items()}
    return [{"row": "embed", "workers": w, "pipeline_img_s": best[f"pipe{w}"], "bare_img_s": best["bare"],
             "ratio": best[f"pipe{w}"] / best["bare"], "n": n, "size": size, "batch": batch} for w in (0, 8)]


def part_train(n: int = 8192, size: int = 224, batch: int = 64) -> list[dict]:
    counts = sorted({8, os.cpu_count() or 1})  # loader workers: the old auto default (8) and every core
    bare, pipe = train_rates(WORK / "train.npy", n, size, batch, counts, device="cuda", pretrained="none", epochs=2,
                             warmup=5)
    return [{"row": "train", "pipeline_img_s": pipe[w], "bare_img_s": bare, "ratio": pipe[w] / bare,
             "workers": w, "n": n, "size": size, "batch": batch} for w in counts]


def part_precision(size: int = 224, batch: int = 64, steps: int = 60) -> list[dict]:
    import torch

    from stage1_backbone.model import PawpularityNet
    from stage1_backbone.pretrained import create_backbone

    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch * 8, 3, size, size), dtype=torch.uint8, generator=g).cuda()
    y = torch.rand(batch * 8, generator=g).cuda()
    out = []
    for label, mixed, channels_last, compiled in [("fp32", False, False, False), ("bf16", True, False, False),
                                                 ("bf16 + channels_last", True, True, False),
                                                 ("bf16 + channels_last + compile", True, True, True)]:
        model = PawpularityNet(create_backbone(BACKBONE, "none")).cuda().train()
        xs = x
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            xs = x.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        if compiled:
            model.backbone.compile()
        rate = bare_train(model, xs, y, batch, steps, mixed, warmup=5)
        out.append({"row": "precision", "variant": label, "img_s": rate, "first_call_s": time.perf_counter() - t0,
                    "size": size, "batch": batch})
    return out


def part_svr(rows: int = 8921) -> list[dict]:
    res = subprocess.run([PY, "benchmarks/bench_svr.py", "--rows", str(rows)], cwd=ROOT, capture_output=True,
                         text=True)
    print(res.stdout + res.stderr[-2000:], file=sys.stderr)
    table = [line for line in res.stdout.splitlines() if line.startswith("| ")]
    return [{"row": "svr", "rows": rows, "table": table, "cores": os.cpu_count()}]


def _competition_jpegs():
    from run_all import WORK as RUN_ALL_WORK, make_competition_jpegs

    return make_competition_jpegs(RUN_ALL_WORK / "jpegs", 9912)


def part_decode() -> list[dict]:
    from run_all import part_decode_pil, part_decode_project

    _competition_jpegs()
    proj = part_decode_project(9912, 224)
    pil = part_decode_pil(9912, 224)
    return [{"row": "decode", "project_img_s": proj["images_per_s"], "pil_img_s": pil["images_per_s"],
             "ratio": proj["images_per_s"] / pil["images_per_s"], "cores": os.cpu_count()}]


def lightning_rate(cfg, device: str, backbone: str, pixels, rows, targets, steps: int, warmup: int = 10) -> float:
    """Images/s of stage 1's loaders and Lightning loop (random weights) over `steps` batches, after `warmup`
    (autotune, workers). The EMA callback and the accumulation come from cfg, through training's own helpers;
    every batch counts, optimizer step or not."""
    from stage1_backbone.lit import LitPawpularity
    from stage1_backbone.train import fold_loaders, weight_averaging

    train_loader, _ = fold_loaders(cfg, pixels, rows, rows[:cfg.batch_size], targets, None, seed=0)
    lit = LitPawpularity(new_model(device, "none", backbone), 3e-5, 1e-2, 0)
    timer = clock(device, "on_train_batch_end")
    quiet_trainer(device, timer, *weight_averaging(cfg), max_epochs=1, limit_train_batches=steps,
                  accumulate_grad_batches=cfg.accumulate).fit(lit, train_loader)
    timed = timer.stamps[warmup:]
    return (len(timed) - 1) * cfg.batch_size / (timed[-1] - timed[0])


def part_speed(steps: int = 40) -> list[dict]:
    """Stage 1's own loaders and Lightning loop at competition settings; random weights (speed only)."""
    import numpy as np
    import torch

    from pawcore.images import cached_images
    from stage1_backbone.config import TrainConfig

    quiet_lightning()
    paths = _competition_jpegs()
    n = len(paths)
    n_train = n * 4 // 5  # one fold of 5 trains on 4/5 of the rows
    out = []
    for backbone, size, batch in [(BACKBONE, 224, 64), ("convnext_base", 384, 32),
                                  ("swin_large_patch4_window12_384", 384, 16)]:
        t0 = time.perf_counter()
        pixels = cached_images(paths, size, WORK / "cache", "speed")
        decode_s = time.perf_counter() - t0
        targets = np.random.default_rng(0).uniform(1, 100, n).astype(np.float32)
        rate = lightning_rate(TrainConfig(batch_size=batch, img_size=size), "cuda", backbone, pixels,
                              np.arange(n_train), targets, steps)
        out.append({"row": "speed", "backbone": backbone, "size": size, "batch": batch, "img_s": rate,
                    "epoch_s": n_train / rate, "n_train": n_train, "decode_s": decode_s,
                    "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30})
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return out


# (label, train-backbone settings): the plain loop first and last, so drift during the run shows.
INGREDIENT_RUNS = [("plain", {}), ("ema 0.999", {"ema": 0.999}), ("accumulate 4", {"accumulate": 4}),
                   ("ema 0.999 + accumulate 4", {"ema": 0.999, "accumulate": 4}), ("plain", {})]


def part_ingredients(steps: int = 40, device: str = "cuda", backbone: str = "convnext_base", size: int = 384,
                     batch: int = 32, warmup: int = 10) -> list[dict]:
    """Stage 1's loaders and Lightning loop with --ema / --accumulate on vs off; random pixels and weights
    (speed only)."""
    import numpy as np
    import torch

    from stage1_backbone.config import TrainConfig

    quiet_lightning()
    n = batch * (steps + 2)
    work_file = WORK / f"ingredients-{size}.npy"
    work_file.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(work_file, rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8))
    pixels, targets, rows = np.load(work_file, mmap_mode="r"), rng.uniform(1, 100, n).astype(np.float32), np.arange(n)
    out = []
    for label, extra in INGREDIENT_RUNS:
        rate = lightning_rate(TrainConfig(batch_size=batch, img_size=size, **extra), device, backbone, pixels,
                              rows, targets, steps, warmup)
        out.append({"row": "ingredients", "variant": label, "backbone": backbone, "size": size, "batch": batch,
                    "img_s": rate, "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0})
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    plain = statistics.mean(r["img_s"] for r in out if r["variant"] == "plain")
    for r in out:
        r["ratio"] = r["img_s"] / plain
    return out


def part_e2e(oxford: str = "") -> list[dict]:
    from run_all import timed_command

    out = []
    secs, rss, _ = timed_command([PY, "pipeline.py", "demo", "--artifacts-dir", str(WORK / "demo")])
    out.append({"row": "e2e", "what": "demo (generate, train-backbone, fit-svr, infer)", "seconds": secs})
    if oxford:
        common = ["--artifacts-dir", str(WORK / "oxford"), "--run", "oxford"]
        steps = [["train-backbone", "--data-dir", oxford, *common, "--img-size", "160", "--epochs", "3"],
                 ["fit-svr", *common], ["infer", "--data-dir", oxford, *common, "--blend", "0.5"]]
        total, printed = 0.0, ""
        for step in steps:
            secs, _, stdout = timed_command([PY, "pipeline.py", *step])
            total += secs
            printed += stdout
            out.append({"row": "e2e", "what": f"oxford {step[0]}", "seconds": secs})
        score = subprocess.run([PY, "benchmarks/score_submission.py", str(WORK / "oxford/oxford/submission.csv"),
                                f"{oxford}/test_labels.csv", "--train-csv", f"{oxford}/train.csv"], cwd=ROOT,
                               capture_output=True, text=True).stdout
        out.append({"row": "e2e", "what": "oxford total", "seconds": total, "infer_stdout": printed[-1500:],
                    "score": score.strip()})
    return out


PARTS = {"embed": part_embed, "train": part_train, "precision": part_precision, "svr": part_svr,
         "decode": part_decode, "speed": part_speed,
         "ingredients": part_ingredients, "e2e": part_e2e}


def report(files: list[str]) -> str:
    rows = [json.loads(line) for f in files for line in Path(f).read_text().splitlines() if line.strip()]
    meta = next(r for r in rows if r["row"] == "meta")
    lines = [f"## GPU ({meta['gpu']})", "",
             f"Command: `python benchmarks/bench_gpu.py --parts ...` on {meta['date']}, one lent {meta['gpu']} "
             f"({meta['cores']} CPU cores); torch {meta['torch']}, timm {meta['timm']}. Each ratio compares two "
             f"measurements from one run; rows come from `benchmarks/results-gpu.jsonl` "
             f"(`python benchmarks/bench_gpu.py --report benchmarks/results-gpu.jsonl`).", "",
             "| # | benchmark | measured | baseline (same run) | ratio | goal |", "|---|---|---|---|---|---|"]
    i = 0

    def add(*cells: str) -> None:
        nonlocal i
        i += 1
        lines.append(f"| G{i} | " + " | ".join(cells) + " |")

    for r in rows:
        if r["row"] == "embed":
            add(f"embedding extraction, tf_efficientnet_lite0 {r['size']} px, batch {r['batch']}, bf16, "
                f"{r['workers']} loader workers", f"pipeline {r['pipeline_img_s']:.0f} img/s",
                f"bare model on GPU tensors {r['bare_img_s']:.0f} img/s", f"{r['ratio']:.2f}", ">= 0.90")
        elif r["row"] == "train":
            add(f"training epoch, tf_efficientnet_lite0 {r['size']} px, batch {r['batch']}, bf16-mixed, "
                f"channels_last, {r['workers']} workers", f"pipeline {r['pipeline_img_s']:.0f} img/s",
                f"bare forward+backward+step {r['bare_img_s']:.0f} img/s", f"{r['ratio']:.2f}", ">= 0.85")
        elif r["row"] == "precision":
            base = next(p for p in rows if p["row"] == "precision" and p["variant"] == "fp32")
            add(f"training step, lite0 {r['size']} px, batch {r['batch']}: {r['variant']}",
                f"{r['img_s']:.0f} img/s (set-up and 5 warm-up steps{', compile included' if 'compile' in r['variant'] else ''}: "
                f"{r['first_call_s']:.0f} s)",
                f"fp32 {base['img_s']:.0f} img/s", f"{r['img_s'] / base['img_s']:.2f}x", "")
        elif r["row"] == "svr":
            cells = {c.split("|")[1].strip(): [x.strip() for x in c.split("|")[2:-1]] for c in r["table"][1:]}
            if "sklearnex" in cells:
                add(f"SVR fit, {r['rows']} x 1280 float32, C=20, {r['cores']} cores", f"sklearnex {cells['sklearnex'][0]} s",
                    f"sklearn {cells['sklearn'][0]} s", f"{cells['sklearnex'][1]} faster; RMSE diff "
                    f"{cells['sklearnex'][3]}", "RMSE diff <= 0.05")
            if "cuml" in cells:
                add(f"SVR fit, {r['rows']} x 1280, cuML", f"cuml {cells['cuml'][0]} s", f"sklearn {cells['sklearn'][0]} s",
                    f"{cells['cuml'][1]}", "")
        elif r["row"] == "decode":
            add(f"cold decode, 9912 competition-sized JPEGs -> 224 px, {r['cores']} cores",
                f"project cache build {r['project_img_s']:.0f} img/s", f"plain PIL loop {r['pil_img_s']:.0f} img/s",
                f"{r['ratio']:.2f}x", "faster than PIL")
        elif r["row"] == "speed":
            add(f"stage 1 at competition settings: {r['backbone']} {r['size']} px, batch {r['batch']}, bf16-mixed, "
                f"random weights", f"{r['img_s']:.0f} img/s = {r['epoch_s']:.0f} s per epoch of {r['n_train']} "
                f"photos; peak GPU memory {r['peak_gpu_gb']:.1f} GiB",
                f"(decode to {r['size']} px: " + (f"{r['decode_s']:.0f} s, once)" if r["decode_s"] >= 1
                                                  else "cache hit)"), "", "plan a real run")
        elif r["row"] == "ingredients" and r["variant"] != "plain":
            plain = [p["img_s"] for p in rows if p["row"] == "ingredients" and p["variant"] == "plain"]
            add(f"stage 1 with {r['variant']}: {r['backbone']} {r['size']} px, batch {r['batch']}, bf16-mixed",
                f"{r['img_s']:.0f} img/s; peak GPU memory {r['peak_gpu_gb']:.1f} GiB",
                "plain loop " + " and ".join(f"{v:.0f}" for v in plain) + " img/s (before, after)",
                f"{r['ratio']:.2f}x", "")
        elif r["row"] == "e2e":
            oof = re.findall(r"overall\s+\d+\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", r.get("infer_stdout", ""))
            test = re.search(r"test RMSE ([\d.]+)", r.get("score", ""))
            quality = (f"; OOF RMSE NN {oof[-1][1]}, SVR {oof[-1][2]}, blend 0.5 {oof[-1][3]}; test RMSE "
                       f"{test.group(1)}" if oof and test else "")
            add(f"end to end on the GPU: {r['what']}", f"{r['seconds']:.0f} s wall{quality}", "", "", "")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="", help="comma-separated: " + ",".join(PARTS))
    p.add_argument("--out", default="artifacts/bench-gpu")
    p.add_argument("--oxford", default="", help="oxford-pets-370 folder for the e2e part")
    p.add_argument("--report", nargs="*", help="jsonl files -> print the markdown GPU section")
    args = p.parse_args()
    if args.report:
        print(report(args.report))
        return 0
    import timm
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "gpu.jsonl"
    with log.open("a") as f:
        f.write(json.dumps({"row": "meta", "gpu": gpu_name(), "torch": torch.__version__, "timm": timm.__version__,
                            "cores": os.cpu_count(), "date": dt.date.today().isoformat()}) + "\n")
    for name in [p for p in args.parts.split(",") if p]:
        t0 = time.perf_counter()
        try:
            rows = PARTS[name](**({"oxford": args.oxford} if name == "e2e" else {}))
        except Exception as e:  # one failing part must not lose the others' figures
            rows = [{"row": "failed", "part": name, "error": f"{type(e).__name__}: {e}"[:2000]}]
        with log.open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(f"[{name}] {time.perf_counter() - t0:.0f} s: {json.dumps(rows)[:600]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
