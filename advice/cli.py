"""`pipeline.py score` and `pipeline.py serve`: their options and what they print."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_MAX_MB = 20
HEATMAP_NAMING = ("<stem>-heatmap.png; photos whose stems clash (a/x.jpg, b/x.jpg, x.png; case ignored) "
                  "get -2, -3, ... after the stem, in the order given")  # advice.heatmap.heatmap_names


def add_advice_commands(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser] = ()) -> None:
    """Add `score` and `serve`; `parents` carries the options every command shares (-v)."""
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--run", default="default", help="Run whose submission's ensemble to replay.")
        p.add_argument("--artifacts-dir", default="artifacts", help="Root of all outputs.")
        p.add_argument("--ensemble", default="", help="ensemble.json written by infer (default: "
                       "<artifacts-dir>/<run>/ensemble.json; give it when infer ran with --out elsewhere).")
        p.add_argument("--min-crop", type=float, default=0.5,
                       help="Smallest share of each side a suggested crop keeps (default: 0.5).")
        p.add_argument("--device", default="cpu", help="cpu, cuda, auto (default: cpu).")
        p.add_argument("--batch-size", type=int, default=64, help="Images per forward pass (crop candidates).")

    p = sub.add_parser("score", parents=list(parents), help="Score photos with a finished run exactly as infer would; suggest a crop.",
                       description="Each photo's final score (same folds, heads, blend and TTA as the run's "
                                   "submission) and each head's score. Exit code 1 if any photo failed.")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="Photo files (JPEG, PNG, WebP...), one or more.")
    common(p)
    p.add_argument("--json", action="store_true", help="Print a JSON list, one object per photo.")
    p.add_argument("--suggest-crop", action="store_true", help="Search crops for the highest score.")
    p.add_argument("--heatmap", default="", metavar="DIR",
                   help="Write the occlusion map of the final score over each photo to DIR (checked, or "
                        "created, before any work), named " + HEATMAP_NAMING + ".")
    p.set_defaults(func=score_command)

    p = sub.add_parser("serve", parents=list(parents), help="A web page (and JSON API) to score photos, rank them, explain, crop.")
    common(p)
    p.add_argument("--host", default="127.0.0.1", help="Interface to bind (default: loopback only).")
    p.add_argument("--port", type=int, default=8000, help="Port to listen on (default: 8000).")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_MB,
                   help="Largest request accepted; bigger ones get HTTP 413.")
    p.add_argument("--max-files", type=int, default=12, help="Most photos in one request.")
    p.set_defaults(func=serve_command)


def _ensemble(args: argparse.Namespace):
    from .score import load_ensemble

    return load_ensemble(args.artifacts_dir, args.run, args.ensemble or None, args.device, args.batch_size)


def score_command(args: argparse.Namespace) -> int:
    from .advise import advise
    from .crop import check_min_crop
    from .photos import read_photos

    check_min_crop(args.min_crop)  # a bad --min-crop fails before any model loads
    if args.heatmap:
        from .heatmap import check_heatmap_dir
        check_heatmap_dir(args.heatmap)  # an unwritable --heatmap DIR fails before any work, too
    ensemble = _ensemble(args)
    items = read_photos(args.photos)
    results = advise(ensemble, items, crop=args.suggest_crop, heatmap=bool(args.heatmap), min_crop=args.min_crop)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            print(_line(r))
    failed = [r for r in results if r.error is not None]
    if failed:
        print(f"{len(failed)} of {len(results)} photo(s) could not be scored.", file=sys.stderr)
    heatmaps_failed = 0
    if args.heatmap:  # after the scores are printed: a heatmap that cannot be written is only that photo's error
        from .heatmap import write_heatmaps
        heatmaps_failed = write_heatmaps(results, items, Path(args.heatmap))
    return 1 if failed or heatmaps_failed else 0


def _line(r) -> str:
    if r.error is not None:
        return f"{r.name}: error: {r.error}"
    s = r.scores
    text = f"{r.name}: score {s.score:.2f} (NN {s.nn:.2f}, SVR {s.svr:.2f})"
    if r.crop is not None:
        text += f"; best crop {list(r.crop.box)} ({r.crop.aspect}) scores {r.crop.score:.2f} ({r.crop.score - s.score:+.2f})"
    return text


def serve_command(args: argparse.Namespace) -> int:
    from .crop import check_min_crop
    from .serve import Limits, create_app, run_server

    check_min_crop(args.min_crop)
    app = create_app(_ensemble(args), Limits(int(args.max_upload_mb * 2**20), args.max_files), args.min_crop,
                     host=args.host)
    print(f"Photo advice on http://{args.host}:{args.port}/  (run {args.run!r}; Ctrl-C stops)", file=sys.stderr)
    run_server(app, args.host, args.port)  # warns when other machines can reach it; quiets library warnings
    return 0
