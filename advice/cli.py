"""`pipeline.py score` and `pipeline.py serve`: what they run and print (their options: advice/config.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import AdviceOptions, ScoreConfig, ServeConfig


def _ensemble(cfg: AdviceOptions):
    from .score import photo_ensemble

    return photo_ensemble(cfg.artifacts_dir, cfg.run, cfg.ensemble or None, cfg.device, cfg.batch_size)


def score_command(cfg: ScoreConfig) -> int:
    from .advise import advise
    from .photos import read_photos

    ensemble = _ensemble(cfg)
    items = read_photos(list(cfg.photos))
    results = advise(ensemble, items, crop=cfg.suggest_crop, heatmap=bool(cfg.heatmap), min_crop=cfg.min_crop)
    if cfg.heatmap:
        _write_heatmaps(results, items, Path(cfg.heatmap))
    if cfg.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            print(_line(r))
    failed = [r for r in results if r.error is not None]
    if failed:
        print(f"{len(failed)} of {len(results)} photo(s) could not be scored.", file=sys.stderr)
    return 1 if failed else 0


def _line(r) -> str:
    if r.error is not None:
        return f"{r.name}: error: {r.error}"
    s = r.scores
    text = f"{r.name}: score {s.score:.2f} (NN {s.nn:.2f}, SVR {s.svr:.2f})"
    if r.crop is not None:
        text += f"; best crop {list(r.crop.box)} ({r.crop.aspect}) scores {r.crop.score:.2f} ({r.crop.score - s.score:+.2f})"
    return text


def _write_heatmaps(results, items, out_dir: Path) -> None:
    from .heatmap import overlay, png_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    for r, item in zip(results, items):
        if r.heat is not None:
            path = out_dir / f"{Path(r.name).stem}-heatmap.png"
            path.write_bytes(png_bytes(overlay(item.rgb(), r.heat)))
            print(f"Heatmap: {path}", file=sys.stderr)


def serve_command(cfg: ServeConfig) -> int:
    import uvicorn

    from .serve import Limits, create_app

    app = create_app(_ensemble(cfg), Limits(int(cfg.max_upload_mb * 2**20), cfg.max_files), cfg.min_crop)
    print(f"Photo advice on http://{cfg.host}:{cfg.port}/  (run {cfg.run!r}; Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0
