"""The whitened-start benchmark trains each row with its start and schedule, and tabulates
each seed's MCC, the mean, the lowest and the condition number of each seed's data."""

from __future__ import annotations

import json

import numpy as np

import bench.whitened_start as whitened_start
from bench.identifiability import dataset
from ivae.data import load_dataset


def test_rows_train_with_their_start_and_schedule_and_are_summarised(tmp_path, monkeypatch, capsys):
    log = tmp_path / "calls.jsonl"  # the runs train in worker processes

    def run_one(work, variant, model, options, seed, epochs, lr, per_segment, tag):
        call = [variant, model, options["flow_whiten"], epochs, seed, tag]
        with log.open("a") as out:
            out.write(json.dumps(call) + "\n")
        return {"mcc": 0.9 + 0.01 * seed + 0.05 * options["flow_whiten"], "seconds": epochs}

    monkeypatch.setattr(whitened_start, "run_one", run_one)
    whitened_start.main(
        ["--seeds", "2", "--jobs", "1", "--per-segment", "50", "--rows", "1,4",
         "--work", str(tmp_path), "--no-write-docs"]
    )  # fmt: skip
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(calls) == sorted(
        ["square", "implicit-ivae", whiten, epochs, seed, f"implicit-ivae, {label}"]
        for label, (whiten, epochs) in list(whitened_start.ROWS.items())[::3]
        for seed in (0, 1)
    )
    table = capsys.readouterr().out
    assert (
        "| orthogonal start, 45 epochs (the previous default) | 0.900 | 0.910 | 0.905 ± 0.007 |"
        " 0.900 | 45 s |" in table
    )
    assert (
        "| whitened start, 20 epochs (then the default) | 0.950 | 0.960 | 0.955 ± 0.007 | 0.950 |"
        " 20 s |" in table
    )
    data = load_dataset(dataset(tmp_path, "square", 1, 50))
    variances = np.linalg.eigvalsh(np.cov(data.x[data.split == "train"].T))
    assert f"seed 1 (cond. {variances[-1] / variances[0]:,.0f})" in table
