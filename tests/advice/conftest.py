"""A tiny finished run with a submission (blend 0.3, TTA on), so score/serve have an ensemble.json to replay."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import pandas as pd
import pytest

from inference.config import InferConfig
from inference.infer import infer


@pytest.fixture(scope="session")
def advice_run(tiny_run, tiny_data, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """(artifacts dir holding run 'default' + its ensemble.json, the submission infer wrote)."""
    art = tmp_path_factory.mktemp("advice") / "artifacts"
    shutil.copytree(tiny_run, art)
    # Not the defaults, so a score that ignored ensemble.json (blend 0.5, no TTA) would not match.
    sub = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(art), blend="0.3", tta=True))
    return art, sub


@pytest.fixture(scope="session")
def test_photos(tiny_data) -> list[Path]:
    return sorted((tiny_data / "test").glob("*.jpg"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(advice_run, tmp_path_factory):
    """`pipeline.py serve` in its own process on a free loopback port: (base URL, process). 1 MB upload limit."""
    art, _ = advice_run
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(repo / "pipeline.py"), "serve", "--artifacts-dir", str(art),
                                 "--port", str(port), "--max-upload-mb", "1"], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=repo)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
