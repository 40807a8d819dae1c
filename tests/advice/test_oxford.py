"""On real photos, `score` on oxford's 50 test photos reproduces infer's submission.

Real JPEGs (EXIF, many sizes and modes) are where a second decoder would drift. By default a
small run is trained here (the packaged ImageNet backbone, 96 px, 2 folds, 1 epoch: quality does not
matter, equality does); PAWPULARITY_ADVICE_RUN=ARTIFACTS_DIR:RUN checks an existing run with a
submission instead (e.g. the README's oxford run).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from inference.config import InferConfig
from inference.infer import infer
from pawcore.images import load_rgb
from pipeline import main
from stage1_backbone.config import TrainConfig
from stage1_backbone.train import train_backbone
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr

from ..conftest import OXFORD, needs_shared


@pytest.mark.slow
@needs_shared(OXFORD)
def test_score_reproduces_infer_on_oxford_test_photos(tmp_path, capsys):
    if os.environ.get("PAWPULARITY_ADVICE_RUN"):
        art, run = os.environ["PAWPULARITY_ADVICE_RUN"].rsplit(":", 1)
        sub = pd.read_csv(os.path.join(art, run, "submission.csv"), dtype={"Id": str})
    else:
        art, run = str(tmp_path / "art"), "oxford"
        train_backbone(TrainConfig(data_dir=str(OXFORD), artifacts_dir=art, run=run, img_size=96, n_folds=2,
                                   epochs=1, batch_size=32, num_workers=0))
        fit_svr(SVRConfig(artifacts_dir=art, run=run, svr_backend="sklearn"))
        sub = infer(InferConfig(data_dir=str(OXFORD), artifacts_dir=art, run=run, blend="0.5", tta=True))
    photos = [OXFORD / "test" / f"{i}.jpg" for i in sub["Id"]]
    assert len(photos) == 50
    capsys.readouterr()
    code = main(["score", *map(str, photos), "--artifacts-dir", art, "--run", run, "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and len(rows) == 50
    got = np.array([r["score"] for r in rows])
    diff = np.abs(got - sub["Pawpularity"].to_numpy())
    assert diff.max() < 1e-4, f"max |score - submission| = {diff.max():.2e}"
    # Crop search on real photo shapes (a sample: every candidate x every fold per photo).
    code = main(["score", *map(str, photos[:6]), "--artifacts-dir", art, "--run", run, "--json", "--suggest-crop"])
    crops = json.loads(capsys.readouterr().out)
    assert code == 0
    saved = []
    for r, full, photo in zip(crops, rows, photos):
        x0, y0, x1, y1 = r["crop"]["best_box"]  # the favourite, suggested or not
        assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"]
        assert (x1 - x0) >= 0.5 * r["width"] - 1 and (y1 - y0) >= 0.5 * r["height"] - 1
        # Another batch (6 photos, not 50) may change the float sums by ~1e-6, never more than infer's tolerance.
        assert r["score"] == pytest.approx(full["score"], abs=1e-4)
        # The box in the upright photo's pixels, saved losslessly, to be scored again as a photo of its own.
        saved.append(tmp_path / f"crop-{photo.stem}.png")
        Image.fromarray(load_rgb(photo)[y0:y1, x0:x1]).save(saved[-1])
    # The crop's reported score is the score of the pixels in its box, on portrait and landscape photos:
    # catches a box reported in other coordinates than the pixels searched (x/y swapped, another candidate's).
    code = main(["score", *map(str, saved), "--artifacts-dir", art, "--run", run, "--json"])
    again = json.loads(capsys.readouterr().out)
    assert code == 0
    np.testing.assert_allclose([a["score"] for a in again], [r["crop"]["best_score"] for r in crops], atol=1e-4)
    with capsys.disabled():
        print(f"\noxford: max |score - submission| = {diff.max():.2e} over {len(rows)} photos ({art}:{run})")
