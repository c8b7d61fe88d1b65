"""Loading a run (ivae.run): the trainer stays out of it, and where a run's data lives."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from tiny_run import make_tiny_run

from ivae.run import Run

ROOT = Path(__file__).resolve().parent.parent


def test_loading_a_run_does_not_import_the_trainer(tmp_path_factory):
    run_path = make_tiny_run(tmp_path_factory.mktemp("tiny"))
    code = (
        "import sys, ivae\n"
        f"run = ivae.load_run({str(run_path)!r})\n"
        "run.encode_x(run.load_data().x[:2])\n"
        "print(sorted(m for m in sys.modules if m in ('ivae.train', 'ivae.evaluate')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def data_dir(path: str, root: Path | None = None) -> Path:
    run = SimpleNamespace(config={"data": {"path": path}})
    return partial(Run.data_dir, run)(root)


def test_data_dir_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data_dir("data/kitchen") == tmp_path / "data" / "kitchen"  # the working folder
    assert data_dir("data/kitchen", root=tmp_path / "repo") == tmp_path / "repo/data/kitchen"
    there = tmp_path / "elsewhere" / "photos"
    there.mkdir(parents=True)
    assert data_dir(str(there), root=tmp_path / "repo") == there  # an absolute path that exists
    gone = "/no/such/folder/kitchen"
    assert data_dir(gone) == Path(gone)  # no root: as configured
    assert data_dir(gone, root=tmp_path / "repo") == tmp_path / "repo" / "data" / "kitchen"
