"""A bounded loopback load test of `serve`: fixed rounds of concurrent requests, all answered, memory flat."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROUNDS, PER_ROUND, CONCURRENCY = 4, 12, 6


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


def test_concurrent_requests_are_all_answered_and_memory_stays_flat(live_server, test_photos):
    url, proc = live_server
    photos = [(p.name, p.read_bytes(), "image/jpeg") for p in test_photos[:3]]

    def request(i: int) -> tuple[str, int, dict]:
        kind = ("good", "bad", "huge")[0 if i % 6 else (i // 6) % 2 + 1]  # mostly photos, some bad uploads
        files = {"good": [("photos", photos[i % 3])],
                 "bad": [("photos", ("x.jpg", b"\x00" * 100, "image/jpeg")), ("photos", photos[0])],
                 "huge": [("photos", ("big.jpg", b"\xff" * (2 * 2**20), "image/jpeg"))]}[kind]
        with httpx.Client(timeout=300) as client:
            reply = client.post(url + "/api/score?crop=0&heatmap=0", files=files)
        return kind, reply.status_code, reply.json()

    rss, scores = [], {}
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for r in range(ROUNDS):
            for kind, status, body in pool.map(request, range(r * PER_ROUND, (r + 1) * PER_ROUND)):
                if kind == "huge":
                    assert status == 413 and "MB limit" in body["detail"]
                    continue
                assert status == 200, body
                rows = body["results"]
                if kind == "bad":
                    assert "error" in rows[0] and rows[1]["rank"] == 1
                for row in rows:
                    if "score" in row:
                        scores.setdefault(row["path"], set()).add(round(row["score"], 6))
            rss.append(_rss_mb(proc.pid))
    assert proc.poll() is None, "the server died under load"
    # Same photo, same score, whatever else ran at the same time.
    assert len(scores) == 3 and all(len(s) == 1 for s in scores.values()), scores
    # After a warm-up round, 3 more rounds (36 requests, ~70 MB uploaded) add almost nothing.
    growth = rss[-1] - rss[0]
    assert growth < 40, f"RSS grew {growth:.0f} MB over {ROUNDS - 1} rounds: {np.round(rss)}"
