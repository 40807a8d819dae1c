#!/usr/bin/env python
"""Repeated held-out benchmark: does stage 2 help on photos the pipeline never saw?

    .venv/bin/python benchmarks/heldout_oxford.py --rows-to benchmarks/RESULTS.md     # K=5, README settings
                                                        # (~10 min per split on 2 CPU cores: ~50 min)
    .venv/bin/python benchmarks/heldout_oxford.py --splits 2 --epochs 1 --n-folds 2 --img-size 64 \
        --work /tmp/heldout-try                                                        # a quick try
    .venv/bin/python benchmarks/heldout_oxford.py --stage2 old="--C 20 --balance off --nested off" --stage2 new="" --stage2 c100="--C 100"
    .venv/bin/python benchmarks/heldout_oxford.py --stage1 mixup="--mixup 0.4" --stage1 ema="--ema 0.9" \
        --work artifacts/heldout-ingredients --rows-to benchmarks/RESULTS.md    # stage-1 ingredients, on vs off

Draws K random 320/50 train/test splits of the 370 labelled oxford photos (train.csv + test_labels.csv;
split i uses seed --seed + i) and, on each, runs the whole pipeline through its CLI at the README's
settings: stage 1 once (`train-backbone --img-size 160 --epochs 3`, 5 folds), then stage 2 under each
named setting (`--stage2 NAME="FIT-SVR FLAGS"`; default old="--C 20 --balance off --nested off" (the settings before C auto), new="" = today's defaults), then
`infer` with --blend 1 (NN head), 0 (SVR head), 0.5 and auto, each scored on the split's 50 labels.

    <work>/split{i}/data/                 the split in the Kaggle layout (images are symlinks)
    <work>/split{i}/test_labels.csv       the 50 labels, beside the data dir: the pipeline never sees them
    <work>/split{i}/artifacts/base/       stage 1 (train-backbone --run base)
    <work>/split{i}/artifacts/<setting>/  folds.csv + stage1/ hard-linked from base, then its own stage2/
                                          and infer-{nn,svr,0.5,auto}/ (submission.csv, report.md)
    <work>/split{i}/results-<setting>.json   written last: a finished split/setting is skipped
    <work>/split{i}/logs/                 each command's output
    <work>/summary.md                     the tables (--rows-to also puts them in a markdown file)

How the settings share stage 1: fit-svr writes into its run's own stage2/ and has no option to write
elsewhere, so each setting is a run of its own whose folds.csv and stage1/ are hard links to the base
run's files (a copy where links fail). Stage 1's manifest records file hashes, not the run's name, so
fit-svr and infer accept it as is; the feature and image caches (<artifacts>/features, cache) are per
artifacts dir, so each setting reuses the fine-tuned folds' features the first one computed.

Stage-1 variants (`--stage1 NAME="TRAIN-BACKBONE FLAGS"`, repeatable): each split also trains stage 1 with
those flags added, as run base-NAME with `--folds-from base` (the same folds and seeds as the base run, so
only the ingredient differs), and runs every stage-2 setting on it too (as run NAME.SETTING). The tables
then get one row per variant: its test RMSE beside the base run's and the paired difference over the
splits (same photos, same seeds). With --stage1 and no --stage2, stage 2 is today's defaults only (new="").

    <work>/split{i}/artifacts/base-<variant>/           stage 1 with the variant's flags
    <work>/split{i}/artifacts/<variant>.<setting>/       its stage 2 and infer runs
    <work>/split{i}/results-<variant>.<setting>.json

Resuming: a split/setting whose results JSON exists (with the same settings) is skipped; otherwise
train-backbone skips its finished folds, fit-svr is skipped when its manifest is there, each infer
when its report is there. The honest estimates (nested OOF of fit-svr, cross-fitted blend of infer)
are read from the files named in HONEST below; a cell stays empty where a file has no such field.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DATA = "../shared/data/oxford-pets-370"  # relative to the repository root, as in the README
N_TEST = 50
BASE_RUN = "base"
STAGE1_MANIFEST = Path("stage1") / "manifest.json"
DEFAULT_STAGE2 = {"old": "--C 20 --balance off --nested off", "new": ""}
INGREDIENT_STAGE2 = {"new": ""}  # with --stage1 variants: today's stage 2 only
# (key, label, infer --blend): each head alone, the README's 50/50 blend, and the blend chosen on OOF.
HEADS = [("nn", "NN head", "1"), ("svr", "SVR head", "0"), ("blend0.5", "blend 0.5", "0.5"),
         ("auto", "blend auto", "auto")]


@dataclass(frozen=True)
class Estimate:
    """An honest estimate written by the pipeline: a JSON field (dotted path) or the first number a regex
    captures in a text file; `file` is relative to the setting's run dir."""

    label: str
    file: str
    json_key: str = ""
    pattern: str = ""


# Where fit-svr records its nested estimate and infer --blend auto its cross-fitted blend RMSE.
HONEST = {
    "svr": Estimate("nested OOF", "stage2/manifest.json", json_key="nested_rmse"),
    "auto": Estimate("cross-fitted OOF", "infer-auto/report.md", pattern=r"cross-fitted\D*?(\d+\.\d+)"),
}


# ---------------------------------------------------------------- the splits
def labelled_photos(data_dir: Path) -> pd.DataFrame:
    """Every labelled photo of the data dir (Id, Pawpularity, image), sorted by Id: train.csv's rows and
    the test photos that test_labels.csv labels."""
    train = pd.read_csv(data_dir / "train.csv", dtype={"Id": str})[["Id", "Pawpularity"]]
    test = pd.read_csv(data_dir / "test_labels.csv", dtype={"Id": str})[["Id", "Pawpularity"]]
    train["image"] = [data_dir / "train" / f"{i}.jpg" for i in train["Id"]]
    test["image"] = [data_dir / "test" / f"{i}.jpg" for i in test["Id"]]
    pool = pd.concat([train, test], ignore_index=True)
    if pool["Id"].duplicated().any():
        raise SystemExit(f"{data_dir}: Ids in both train.csv and test_labels.csv: "
                         f"{sorted(pool.loc[pool['Id'].duplicated(), 'Id'])[:5]}")
    return pool.sort_values("Id", ignore_index=True)


def draw_splits(pool: pd.DataFrame, k: int, seed: int, n_test: int = N_TEST) -> list[dict[str, pd.DataFrame]]:
    """K random train/test splits of the pool; split i is drawn with seed + i, so it never depends on K."""
    splits = []
    for i in range(k):
        order = np.random.default_rng(seed + i).permutation(len(pool))
        splits.append({"test": pool.iloc[np.sort(order[:n_test])].reset_index(drop=True),
                       "train": pool.iloc[np.sort(order[n_test:])].reset_index(drop=True)})
    return splits


def write_split(split: dict[str, pd.DataFrame], split_dir: Path) -> Path:
    """The split as a data dir in the Kaggle layout (symlinked images) plus test_labels.csv beside it."""
    data = split_dir / "data"
    if (data / "train.csv").is_file():
        written = pd.read_csv(data / "train.csv", dtype={"Id": str})["Id"].tolist()
        if written != split["train"]["Id"].tolist():
            raise SystemExit(f"{data} holds another split than --seed draws now; use another --work or delete it.")
        return data
    tmp = split_dir / "data.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for part, rows in split.items():
        (tmp / part).mkdir(parents=True)
        for photo, image in zip(rows["Id"], rows["image"]):
            os.symlink(Path(image).resolve(), tmp / part / f"{photo}.jpg")
    split["train"][["Id", "Pawpularity"]].to_csv(tmp / "train.csv", index=False)
    split["test"][["Id"]].to_csv(tmp / "test.csv", index=False)
    split["test"][["Id", "Pawpularity"]].to_csv(split_dir / "test_labels.csv", index=False)
    os.replace(tmp, data)
    return data


# ---------------------------------------------------------------- running the pipeline
def step(name: str, args: list[str], log_dir: Path) -> float:
    """Run `python pipeline.py ARGS` from the repository root, its output to log_dir/name.log; seconds."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    cmd = [sys.executable, "pipeline.py", *args]
    print(f"    {name}: {shlex.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if done.returncode:
        tail = log.read_text().splitlines()[-25:]
        raise SystemExit("\n".join([f"{name} failed (exit {done.returncode}); the end of {log}:", *tail]))
    print(f"    {name}: done in {seconds:.0f} s", flush=True)
    return seconds


def stage1_run(variant: str) -> str:
    """The run that holds a stage-1 variant's training: base, or base-<variant>."""
    return BASE_RUN if variant == BASE_RUN else f"{BASE_RUN}-{variant}"


def setting_label(variant: str, setting: str) -> str:
    """A (stage-1 variant, stage-2 setting) pair's run and results name: the setting alone for the base run
    (as before variants existed, so earlier work dirs resume), else <variant>.<setting>."""
    return setting if variant == BASE_RUN else f"{variant}.{setting}"


def share_stage1(art: Path, setting: str, source: str = BASE_RUN) -> Path:
    """Run dir <art>/<setting> with run `source`'s folds.csv and stage1/ as hard links (copies where links
    fail). Remade from scratch, its stage 2 included, when that stage 1 has changed."""
    base, dest = art / source, art / setting
    if (dest / STAGE1_MANIFEST).is_file() and _stage1_record(dest) == _stage1_record(base):
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    _link_or_copy(base / "folds.csv", dest / "folds.csv")
    shutil.copytree(base / "stage1", dest / "stage1", copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns("*.lock", "*.held"))
    return dest


def _stage1_record(run: Path) -> dict:
    """Stage 1's manifest without its time stamp (train-backbone rewrites it even when no fold changed)."""
    record = json.loads((run / STAGE1_MANIFEST).read_text())
    record.pop("created", None)
    return record


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def run_setting(data: Path, art: Path, setting: str, flags: list[str], log_dir: Path,
                source: str = BASE_RUN) -> dict[str, float]:
    """fit-svr with the setting's flags on stage 1 of run `source`, then infer at each blend. -> seconds per step."""
    run = share_stage1(art, setting, source)
    common = ["--artifacts-dir", str(art), "--run", setting]
    flags_file = run / "stage2-flags.json"
    if flags_file.is_file() and json.loads(flags_file.read_text()) != flags:
        shutil.rmtree(run / "stage2", ignore_errors=True)  # fitted with other flags: fit again
    seconds = {}
    if not (run / "stage2" / "manifest.json").is_file():
        flags_file.write_text(json.dumps(flags))
        for key, _, _ in HEADS:  # infer's outputs belong to the old stage 2
            shutil.rmtree(run / f"infer-{key}", ignore_errors=True)
        seconds["fit-svr"] = step(f"{setting}-fit-svr", ["fit-svr", *common, *flags], log_dir)
    for key, _, blend in HEADS:
        out = run / f"infer-{key}"
        if not (out / "report.md").is_file():
            seconds[f"infer {key}"] = step(f"{setting}-infer-{key}", [
                "infer", "--data-dir", str(data), *common, "--blend", blend, "--out", str(out / "submission.csv")],
                log_dir)
    return seconds


# ---------------------------------------------------------------- measuring
def heldout_rmses(run: Path, labels: Path, train_csv: Path) -> dict[str, float]:
    """Each head's submission scored on the split's labels, and the training mean's RMSE."""
    from score_submission import rows_rmse, scored_rows

    scores = {key: rows_rmse(scored_rows(run / f"infer-{key}" / "submission.csv", labels)) for key, _, _ in HEADS}
    truth = pd.read_csv(labels)["Pawpularity"].to_numpy(float)
    mean = pd.read_csv(train_csv)["Pawpularity"].mean()
    scores["mean"] = float(np.sqrt(np.mean((truth - mean) ** 2)))
    return scores


def oof_rmses(run: Path) -> tuple[dict[str, float], float]:
    """(OOF RMSE of each head and blend, blend auto's NN weight) from the stages' OOF files and the
    weights infer --blend auto wrote in its ensemble.json."""
    from inference.ensemble_oof import run_oof
    from pawcore.metrics import clip_score, rmse
    from pawcore.run import run_dir

    oof = run_oof(run_dir(run.parent, run.name))
    weights = json.loads((run / "infer-auto" / "ensemble.json").read_text())["weights"]
    w = sum(v for head, v in weights.items() if head.endswith(":nn"))
    preds = {"nn": oof["nn"], "svr": oof["svr"], "blend0.5": clip_score(0.5 * oof["nn"] + 0.5 * oof["svr"]),
             "auto": clip_score(w * oof["nn"] + (1 - w) * oof["svr"])}
    return {key: rmse(pred, oof["target"]) for key, pred in preds.items()}, float(w)


def honest_estimates(run: Path) -> dict[str, float | None]:
    """The estimates named in HONEST, None where the file or field is absent."""
    found = {}
    for key, est in HONEST.items():
        path, value = run / est.file, None
        if path.is_file() and est.json_key:
            value = json.loads(path.read_text())
            for part in est.json_key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        elif path.is_file() and est.pattern:
            match = re.search(est.pattern, path.read_text())
            value = match.group(1) if match else None
        found[key] = float(value) if isinstance(value, (int, float, str)) else None
    return found


# ---------------------------------------------------------------- one split
def wanted_settings(i: int, args: argparse.Namespace) -> dict[str, dict]:
    """{label: what its results must have been made with} for split i: every stage-1 variant x stage-2 setting.
    The base variant's records are those of the time before variants, so earlier work dirs resume."""
    wanted = {}
    for variant, extra in args.stage1.items():
        for name, flags in args.stage2.items():
            settings = {"split": i, "seed": args.seed + i, "stage1_flags": args.stage1_flags + extra,
                        "stage2_flags": flags}
            if variant != BASE_RUN:
                settings["stage1"] = variant
            wanted[setting_label(variant, name)] = settings
    return wanted


def bench_split(i: int, split: dict[str, pd.DataFrame], args: argparse.Namespace) -> list[dict]:
    """Stage 1 once per variant (base first: the others share its folds), then every stage-2 setting on each;
    each setting's results JSON is written last."""
    split_dir = args.work / f"split{i}"
    wanted = wanted_settings(i, args)
    results, todo = [], []
    for label, settings in wanted.items():
        done = _read_done(split_dir / f"results-{label}.json", settings)
        if done:
            results.append(done)
        else:
            todo.append(label)
    print(f"split {i} (seed {args.seed + i}): " + (f"to run: {', '.join(todo)}" if todo else "finished, skipped"))
    if not todo:
        return results
    data, art, logs = write_split(split, split_dir), split_dir / "artifacts", split_dir / "logs"
    trained: dict[str, float] = {}
    for variant, extra in args.stage1.items():
        labels = [setting_label(variant, name) for name in args.stage2]
        if variant != BASE_RUN and not set(labels) & set(todo):
            continue
        share = ["--folds-from", BASE_RUN] if variant != BASE_RUN else []
        run = stage1_run(variant)
        trained[run] = step("train-backbone" if variant == BASE_RUN else f"train-backbone-{variant}",
                            ["train-backbone", "--data-dir", str(data), "--artifacts-dir", str(art), "--run", run,
                             *share, *args.stage1_flags, *extra], logs)
        for name, label in zip(args.stage2, labels):
            if label in todo:
                seconds = {"train-backbone (this call)": trained[run],
                           **run_setting(data, art, label, wanted[label]["stage2_flags"], logs, run)}
                results.append(_finish(split_dir, label, wanted[label], seconds))
    return sorted(results, key=lambda r: list(wanted).index(r["setting"]))


def _read_done(path: Path, settings: dict) -> dict | None:
    """A finished split/setting's results, or None; a results file made with other settings stops here."""
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    if {k: done.get(k) for k in settings} != settings:
        raise SystemExit(f"{path} was made with other settings ({ {k: done.get(k) for k in settings} }, now "
                         f"{settings}). Use another --work, or delete it to measure again.")
    return done


def _finish(split_dir: Path, name: str, settings: dict, seconds: dict[str, float]) -> dict:
    run = split_dir / "artifacts" / name
    oof, weight = oof_rmses(run)
    result = {**settings, "setting": name,
              "test": heldout_rmses(run, split_dir / "test_labels.csv", split_dir / "data" / "train.csv"),
              "oof": oof, "honest": honest_estimates(run), "auto_nn_weight": weight,
              "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    (split_dir / f"results-{name}.json").write_text(json.dumps(result, indent=1))
    print(f"  {name}: test RMSE " + ", ".join(f"{label} {result['test'][key]:.3f}" for key, label, _ in HEADS))
    return result


# ---------------------------------------------------------------- tables
def _cell(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def ingredient_table(results: list[dict], args: argparse.Namespace) -> str:
    """One row per stage-1 variant and stage-2 setting: test RMSE of the NN head and the blends, mean ± sd over
    the splits, each beside the paired difference from the base run (variant minus base, per split: the
    same photos and seeds, so the split-to-split spread cancels). Negative is better."""
    keys = [("nn", "NN head"), ("blend0.5", "blend 0.5"), ("auto", "blend auto")]
    lines = ["| stage-1 variant | train-backbone flags | stage 2 | splits | "
             + " | ".join(f"test {label} | Δ {label} vs base" for _, label in keys) + " |",
             "|" + "---|" * (4 + 2 * len(keys))]
    for name in args.stage2:
        base = {r["split"]: r for r in results if r["setting"] == setting_label(BASE_RUN, name)}
        for variant, extra in args.stage1.items():
            rows = [r for r in results if r["setting"] == setting_label(variant, name)]
            cells = []
            for key, _ in keys:
                diffs = [r["test"][key] - base[r["split"]]["test"][key] for r in rows
                         if r["split"] in base and variant != BASE_RUN]
                cells += [_cell([r["test"][key] for r in rows]), _cell(diffs) if diffs else ""]
            flags = shlex.join(extra) if extra else "(today's defaults)"
            lines.append(f"| {variant} | `{flags}` | {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(results: list[dict], settings: list[str]) -> str:
    """Mean ± sd over the splits: per setting and head, test RMSE beside the OOF and honest estimates."""
    lines = ["| setting | head | test RMSE | OOF RMSE (optimistic) | honest estimate |", "|---|---|---|---|---|"]
    for name in settings:
        rows = [r for r in results if r["setting"] == name]
        for key, label, _ in HEADS:
            honest = _cell([r["honest"].get(key) for r in rows])
            if honest:
                honest += f" ({HONEST[key].label})"
            if key == "auto":
                label += f" (NN weight {_cell([r['auto_nn_weight'] for r in rows])})"
            lines.append(f"| {name} | {label} | {_cell([r['test'][key] for r in rows])} | "
                         f"{_cell([r['oof'][key] for r in rows])} | {honest} |")
        lines.append(f"| {name} | train mean | {_cell([r['test']['mean'] for r in rows])} | | |")
    return "\n".join(lines)


def split_table(results: list[dict]) -> str:
    """One row per split and setting."""
    columns = ([f"test {label}" for _, label, _ in HEADS] + ["test train mean"]
               + [f"OOF {label}" for _, label, _ in HEADS]
               + [f"{label} {est.label}" for key, label, _ in HEADS for k, est in HONEST.items() if k == key])
    lines = ["| split | setting | " + " | ".join(columns) + " | auto NN weight |", "|" + "---|" * (len(columns) + 3)]
    for r in results:
        cells = [*[r["test"][k] for k, _, _ in HEADS], r["test"]["mean"], *[r["oof"][k] for k, _, _ in HEADS],
                 *[r["honest"].get(k) for k, _, _ in HEADS if k in HONEST]]
        lines.append(f"| {r['split']} | {r['setting']} | " + " | ".join(_cell([v]) for v in cells)
                     + f" | {r['auto_nn_weight']:.2f} |")
    return "\n".join(lines)


def report(results: list[dict], args: argparse.Namespace, seconds: float) -> str:
    settings = "; ".join(f"{name}: `{shlex.join(flags) or '(defaults)'}`" for name, flags in args.stage2.items())
    labels = list(wanted_settings(0, args))
    ingredients = len(args.stage1) > 1
    heading = "## Held-out benchmark: stage-1 ingredients" if ingredients else "## Held-out benchmark"
    variants = [] if not ingredients else [
        "Stage-1 variants (train-backbone flags added to the base run's; same splits, folds and seeds): "
        + "; ".join(f"{v}: `{shlex.join(f) or '(none)'}`" for v, f in args.stage1.items()) + ".",
        "Each ingredient on vs off (Δ: variant minus base, per split, mean ± sd; negative is better):", "",
        ingredient_table(results, args), ""]
    return "\n".join([
        heading, "",
        f"Command: `{shlex.join(['python', *sys.argv])}` ({dt.date.today().isoformat()}, "
        f"{len({r['split'] for r in results})} splits, {seconds / 60:.0f} min this call).",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs; Python {platform.python_version()}.",
        f"Each split: {N_TEST} test photos drawn at random from the {args.n_photos} labelled photos of "
        f"`{args.data_dir}`, the other {args.n_photos - N_TEST} train stage 1 (`{shlex.join(args.stage1_flags)}`) "
        f"once; stage-2 settings (fit-svr flags): {settings}.", *variants,
        "Mean ± sd over the splits:", "", summary_table(results, labels), "",
        "Per split:", "", split_table(results), ""])


def write_rows_to(path: Path, section: str) -> None:
    """Put the section in a markdown file: replace an earlier '## Held-out benchmark' section, else append."""
    text = path.read_text() if path.is_file() else ""
    heading = section.splitlines()[0]
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    else:
        nxt = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[nxt:] if nxt >= 0 else "")
    path.write_text(text)


# ---------------------------------------------------------------- command line
def parse_stage2(items: list[str] | None) -> dict[str, list[str]]:
    """--stage2 NAME="FLAGS" (repeatable) -> {name: fit-svr flags}; none given: DEFAULT_STAGE2."""
    settings = {}
    for item in items or [f"{k}={v}" for k, v in DEFAULT_STAGE2.items()]:
        name, sep, flags = item.partition("=")
        if (not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in {BASE_RUN, "cache", "features"}
                or name.startswith(f"{BASE_RUN}-")):
            raise SystemExit(f"--stage2 {item!r}: use NAME=\"FIT-SVR FLAGS\" with NAME of letters, digits, "
                             f"'_.-' (not {BASE_RUN}, {BASE_RUN}-*, cache or features), e.g. --stage2 old=\"--C 20\".")
        settings[name] = shlex.split(flags)
    return settings


def parse_stage1(items: list[str] | None) -> dict[str, list[str]]:
    """--stage1 NAME="FLAGS" (repeatable) -> {variant: extra train-backbone flags}, the base run (none) first."""
    variants = {BASE_RUN: []}
    for item in items or []:
        name, sep, flags = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name in {BASE_RUN, "cache", "features"}:
            raise SystemExit(f"--stage1 {item!r}: use NAME=\"TRAIN-BACKBONE FLAGS\" with NAME of letters, digits, "
                             f"'_-' (not {BASE_RUN}, cache or features), e.g. --stage1 mixup=\"--mixup 0.4\".")
        if name in variants:
            raise SystemExit(f"--stage1 {name!r} is given twice: name each variant once.")
        variants[name] = shlex.split(flags)
        fixed = {"--img-size", "--epochs", "--n-folds", "--run", "--artifacts-dir", "--data-dir", "--folds-from"}
        if clash := sorted(fixed & {f.split("=")[0] for f in variants[name]}):
            raise SystemExit(f"--stage1 {item!r}: {clash} are set by the benchmark for every run (use --img-size, "
                             f"--epochs, --n-folds of this script); a variant adds only its ingredient's flags.")
    return variants


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=DATA, help="train.csv, test_labels.csv and their images (default: %(default)s).")
    p.add_argument("--work", type=Path, default=Path("artifacts/heldout"), help="Work dir (default: %(default)s).")
    p.add_argument("--splits", type=int, default=5, help="K random splits (default: %(default)s).")
    p.add_argument("--seed", type=int, default=0, help="Split i is drawn with seed + i (default: %(default)s).")
    p.add_argument("--epochs", type=int, default=3, help="train-backbone --epochs (default: %(default)s).")
    p.add_argument("--img-size", type=int, default=160, help="train-backbone --img-size (default: %(default)s).")
    p.add_argument("--n-folds", type=int, default=5, help="train-backbone --n-folds (default: %(default)s).")
    p.add_argument("--stage2", action="append", metavar='NAME="FLAGS"',
                   help=f"A stage-2 setting: fit-svr flags (repeatable; default: "
                        f"{' '.join(f'{k}={v!r}' for k, v in DEFAULT_STAGE2.items())}).")
    p.add_argument("--stage1", action="append", metavar='NAME="FLAGS"',
                   help="A stage-1 variant: train-backbone flags added to the base run's (repeatable), e.g. "
                        "mixup=\"--mixup 0.4\"; each gets its rows beside the base run's.")
    p.add_argument("--rows-to", type=Path, help="Also put the tables in this markdown file (benchmarks/RESULTS.md).")
    args = p.parse_args(argv)
    args.stage1 = parse_stage1(args.stage1)
    if args.stage2 is None and len(args.stage1) > 1:
        args.stage2 = [f"{k}={v}" for k, v in INGREDIENT_STAGE2.items()]
    args.stage2 = parse_stage2(args.stage2)
    args.stage1_flags = ["--img-size", str(args.img_size), "--epochs", str(args.epochs), "--n-folds", str(args.n_folds)]
    args.work = args.work if args.work.is_absolute() else ROOT / args.work
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    data_dir = Path(args.data_dir) if Path(args.data_dir).is_absolute() else ROOT / args.data_dir
    pool = labelled_photos(data_dir)
    args.n_photos = len(pool)
    splits = draw_splits(pool, args.splits, args.seed)
    print(f"{args.splits} splits of {N_TEST} test photos; stage-1 variants {list(args.stage1)}; stage-2 settings "
          f"{list(args.stage2)}; work dir {args.work}")
    results = []
    for i, split in enumerate(splits):
        t_split = time.perf_counter()
        results += bench_split(i, split, args)
        print(f"split {i}: {time.perf_counter() - t_split:.0f} s", flush=True)
    section = report(results, args, time.perf_counter() - t0)
    (args.work / "summary.md").write_text(section)
    print("\n" + section)
    if args.rows_to:
        write_rows_to(args.rows_to, section)
        print(f"Tables written to {args.rows_to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
