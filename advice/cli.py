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

    if cfg.heatmap:
        from .heatmap import check_heatmap_dir
        check_heatmap_dir(cfg.heatmap)  # an unwritable --heatmap DIR fails before any work
    ensemble = _ensemble(cfg)
    items = read_photos(list(cfg.photos))
    results = advise(ensemble, items, crop=cfg.suggest_crop, heatmap=bool(cfg.heatmap), min_crop=cfg.min_crop)
    if cfg.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            print(_line(r))
    failed = [r for r in results if r.error is not None]
    if failed:
        print(f"{len(failed)} of {len(results)} photo(s) could not be scored.", file=sys.stderr)
    heatmaps_failed = 0
    if cfg.heatmap:  # after the scores are printed: a heatmap that cannot be written is only that photo's error
        from .heatmap import write_heatmaps
        heatmaps_failed = write_heatmaps(results, items, Path(cfg.heatmap))
    return 1 if failed or heatmaps_failed else 0


def _line(r) -> str:
    if r.error is not None:
        return f"{r.name}: error: {r.error}"
    s = r.scores
    text = f"{r.name}: score {s.score:.2f} (NN {s.nn:.2f}, SVR {s.svr:.2f})"
    if r.crop is not None:
        c = r.crop
        if c.suggested:
            text += f"; crop to {list(c.box)} ({c.best_aspect}): {c.reason}"
        else:
            text += f"; keep this photo as it is: {c.reason}"
    return text


def serve_command(cfg: ServeConfig) -> int:
    from .serve import Limits, create_app, run_server

    app = create_app(_ensemble(cfg), Limits(int(cfg.max_upload_mb * 2**20), cfg.max_files), cfg.min_crop,
                     host=cfg.host)
    print(f"Photo advice on http://{cfg.host}:{cfg.port}/  (run {cfg.run!r}; Ctrl-C stops)", file=sys.stderr)
    run_server(app, cfg.host, cfg.port)  # warns when other machines can reach it; quiets library warnings
    return 0
