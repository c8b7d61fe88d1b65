"""Faults, one row each: every way a run, a data set or a link can be wrong, reproduced, and
what must happen instead (docs/design.md: one line naming the file and the fix, never a
traceback or a silently wrong result; runs and data stay intact; one writer per run).

Each case builds its fault on copies (of the tiny run of ``tests/tiny_run.py``, or of small
data made here) and asserts the outcome; ``test_fault`` runs the table.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from tiny_run import make_tiny_dataset, make_tiny_run

import ivae
import ivae.index as index_module
from explorer import data as explorer_data
from explorer import runs as explorer_runs
from explorer import thumbs, ui
from ivae.cli import main
from ivae.data import DataError, load_dataset
from ivae.io import atomic_write
from ivae.run import RunError
from ivae.train import TrainConfig, Trainer, TrainingError, train

HOME = str(explorer_runs.REPO_ROOT / "explorer" / "Home.py")
CASES = {}


def case(function):
    CASES[function.__name__] = function
    return function


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def pca_map(monkeypatch):
    """Indexes here are built with the PCA map (UMAP compiles for a minute)."""
    monkeypatch.setattr(index_module, "map_2d", index_module._pca_2d)


def copy_run(tiny: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "run"))


def cli(capsys, *args: str) -> tuple[int, str]:
    """``ivae ARGS`` in this process: (exit status, stderr)."""
    capsys.readouterr()
    try:
        status = main([str(a) for a in args])
    except SystemExit as stop:  # argparse
        status = stop.code
    return status, capsys.readouterr().err


def shown(text: str) -> str:
    """What Markdown shows of ``text``: its backslash escapes undone (ui.plain)."""
    import re

    return re.sub(r"\\(.)", r"\1", text)


def one_line(status: int, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(word in lines[0] for word in words), lines[0]


def app(run_path: Path | str | None = None, page: str | None = None, **params: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(HOME, default_timeout=120)
    if run_path is not None:
        at.session_state["run_path"] = str(run_path)
    for key, value in params.items():
        at.query_params[key] = value
    if page:
        at.switch_page(f"../pages/{page}.py")
    return at.run()


def toy_npz(path: Path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    base = {"x": rng.standard_normal((120, 3)), "u": np.arange(120) % 4}
    np.savez(path, **{**base, **arrays})
    return path


def tiny_train(data, out: Path, epochs: int = 2, **kw) -> dict:
    config = TrainConfig(epochs=epochs, batch_size=32, seed=0, device="cpu", **kw)
    return train(data, out, "vae", {"latent_dim": 2, "hidden": 8}, config, progress=False)


# ---- 1. an index knows the data and model it was built from -----------------------------
@case
def index_on_other_data_is_read_from_that_data(tmp_path, tiny, capsys, monkeypatch):
    """`ivae index RUN --data OTHER`: the dashboard then reads OTHER (same ids, other dishes),
    and refuses once OTHER's items change, naming the command that rebuilds the index."""
    run = copy_run(tiny, tmp_path)
    other = make_tiny_dataset(tmp_path / "other", seed=5)  # ids d0000... like the run's own
    assert cli(capsys, "index", run, "--data", other)[0] == 0
    index = index_module.load_index(ivae.load_run(run))
    assert index.data_digest and Path(index.data_source) == other.resolve()
    assert index_module.index_data_dir(index, ivae.load_run(run)) == other.resolve()
    at = app(run)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(str(other.resolve()) in c.value for c in at.caption)  # "data: ..." on Home
    items = pd.read_parquet(other / "items.parquet")
    items.loc[3, "text"] = "another recipe"
    items.to_parquet(other / "items.parquet", index=False)
    at = app(run)
    assert not at.exception and len(at.error) == 1
    assert "ivae index" in at.error[0].value and "--data" in at.error[0].value
    with pytest.raises(index_module.MissingIndexError, match="ivae index .* --data"):
        index_module.check_index_data(index, ivae.load_run(run), other)


# ---- 2. the vocabulary is part of the run ------------------------------------------------
@case
def missing_vocab_is_an_error_for_evaluate_index_and_name(tmp_path, tiny, capsys, monkeypatch):
    run = copy_run(tiny, tmp_path)
    (run / "vocab.json").unlink()
    for command in ("evaluate", "index", "name"):
        one_line(*cli(capsys, command, run), "vocab.json is missing")
    (run / "vocab.json").write_text('{"tokens": ["<pad>", "<unk>", "soup"]}')
    one_line(*cli(capsys, "evaluate", run), "vocab.json holds 3 tokens")


# ---- 3. a running dashboard follows `ivae name` + `ivae index` ---------------------------
@case
def new_factor_directions_reach_a_running_dashboard(tmp_path, tiny, capsys, monkeypatch):
    run = copy_run(tiny, tmp_path)
    at = app(run, "studio")
    assert not at.exception
    before = np.array(ui.load_index(str(run)).z)
    assert cli(capsys, "name", run)[0] == 0
    notes = json.loads((run / "factors.json").read_text())
    notes["factors"][0]["sign"] = -1  # the first axis turned around (the old index: +1)
    (run / "factors.json").write_text(json.dumps(notes))
    assert cli(capsys, "index", run)[0] == 0
    at.run()  # the same session, one rerun later
    assert not at.exception
    names = [f["name"] for f in notes["factors"]]
    assert ui.load_run(str(run)).factor_names == names
    after = np.array(ui.load_index(str(run)).z)
    np.testing.assert_array_equal(after, index_module.load_index(ivae.load_run(run)).z)
    np.testing.assert_allclose(after[:, 0], -before[:, 0], rtol=1e-5, atol=1e-6)


@case
def a_file_rewritten_with_its_old_size_and_time_is_noticed(tmp_path, tiny, capsys, monkeypatch):
    """Caches are keyed by content: the middle of a large file changed in place, its size and
    modification time put back (as rsync -t or cp -p leave them), still changes the key."""
    path = tmp_path / "codes.bin"
    path.write_bytes(bytes(1 << 20))
    before = explorer_runs.file_fingerprint(path)
    stat = path.stat()
    time.sleep(0.01)
    with open(path, "r+b") as handle:
        handle.seek(1 << 19)
        handle.write(b"\x01")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert explorer_runs.file_fingerprint(path) != before


# ---- 4. the run picker and ?run= ---------------------------------------------------------
def fake_run(folder: Path, config, metrics) -> Path:
    folder.mkdir(parents=True)
    for name, content in (("config.json", config), ("metrics.json", metrics)):
        text = content if isinstance(content, str) else json.dumps(content)
        (folder / name).write_text(text)
    return folder


@case
def one_bad_run_is_listed_as_broken_and_the_others_work(tmp_path, tiny, capsys, monkeypatch):
    fake_run(tmp_path / "runs" / "good", {"model": "vae"}, {"mcc": 0.5})
    fake_run(tmp_path / "runs" / "bad-json", "{not json", {})
    fake_run(tmp_path / "runs" / "bad-mcc", {"model": "vae"}, {"mcc": "high"})
    fake_run(tmp_path / "runs" / "bad-shape", ["a list"], {"mcc": [1]})
    fake_run(tmp_path / "runs" / "bad-config", {"model_config": [1]}, {})
    found = {s.path.name: s for s in explorer_runs.find_runs(base=tmp_path)}
    assert len(found) == 5 and found["good"].broken is None
    assert "MCC 0.50" in found["good"].label
    for name in ("bad-json", "bad-mcc", "bad-shape"):
        assert found[name].broken and "broken" in found[name].label
    # the dashboard: a broken run among the options, chosen or not, breaks no page
    monkeypatch.setenv(explorer_runs.ROOTS_VARIABLE, str(tmp_path / "runs"))
    for chosen in (tiny, tmp_path / "runs" / "bad-mcc"):
        at = app(chosen)
        assert not at.exception, [e.value for e in at.exception]


@case
def a_long_or_outside_run_link_gives_one_line(tmp_path, tiny, capsys, monkeypatch):
    for link in ("x" * 5000, "/etc", "../../..", str(tiny)):
        assert explorer_runs.confined(link) is None
    assert explorer_runs.confined("assets/default-run") == str(explorer_runs.DEFAULT_RUN)
    assert explorer_runs.confined("runs/../assets/default-run") == str(explorer_runs.DEFAULT_RUN)
    assert explorer_runs.confined("runs/../../etc") is None
    monkeypatch.setenv(explorer_runs.ROOTS_VARIABLE, str(tiny.parent))
    assert explorer_runs.confined(str(tiny)) == str(tiny)
    monkeypatch.delenv(explorer_runs.ROOTS_VARIABLE)
    for link in ("x" * 5000, "/etc", str(tiny)):
        at = app(run=link)
        assert not at.exception, [e.value for e in at.exception]
        warnings = [w.value for w in at.sidebar.warning]
        assert len(warnings) == 1 and "not a run folder" in warnings[0]
        assert at.session_state["run_path"] != link  # never opened


@case
def visitors_cannot_write_factors_json_outside_the_run_roots(tmp_path, tiny, capsys, monkeypatch):
    outside = copy_run(tiny, tmp_path)
    before = (outside / "factors.json").read_bytes() if (outside / "factors.json").exists() else b""
    at = app(None, "factor_cards", run=str(outside))
    assert not at.exception
    assert at.session_state["run_path"] != str(outside)
    after = (outside / "factors.json").read_bytes() if (outside / "factors.json").exists() else b""
    assert after == before


@case
def image_paths_stay_inside_their_data_set(tmp_path, tiny, capsys, monkeypatch):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), "red").save(secret)
    items = pd.DataFrame({"image": ["../secret.png", str(secret)]})
    ctx = ui.Context(None, None, items, np.array(["a", "b"]), tmp_path / "data", (), [])
    for row in (0, 1):
        with pytest.raises(thumbs.MissingImageError, match="outside the data set"):
            ctx.thumbnail(row)
    folder = make_tiny_dataset(tmp_path / "d", n=20, size=16)
    items = pd.read_parquet(folder / "items.parquet")
    items.loc[2, "image"] = "../secret.png"
    items.to_parquet(folder / "items.parquet", index=False)
    with pytest.raises(DataError, match="row 2: image '../secret.png' leads out"):
        load_dataset(folder, image_size=16)


# ---- 5. one writer per run ---------------------------------------------------------------
HOLD = (
    "from ivae.io import run_lock; import sys, time\n"
    "with run_lock(sys.argv[1], 'test'):\n    print('held', flush=True); time.sleep(60)"
)


@case
def a_second_writer_is_refused_naming_the_holder(tmp_path, tiny, capsys, monkeypatch):
    from ivae.io import LockedError, run_lock

    data = load_dataset(toy_npz(tmp_path / "toy.npz"))
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TrainingError, match=f"pid {holder.pid}"):
            tiny_train(data, out)
        assert not (out / "config.json").exists()  # nothing was written
        status, err = cli(capsys, "train", "--data", tmp_path / "toy.npz", "--model", "vae",
                          "--out", out, "--epochs", "1", "--quiet")  # fmt: skip
        one_line(status, err, f"pid {holder.pid}", "wait for it")
        run = copy_run(tiny, tmp_path / "indexed")
        with run_lock(run, "test"):
            with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
                with run_lock(run, "ivae index"):
                    pass
    finally:
        holder.send_signal(signal.SIGKILL)  # a kill -9 leaves no stale lock: flock dies with it
        holder.wait()
    tiny_train(data, out, epochs=1)
    assert (out / "model.pt").exists() and (out / ".lock").exists()


# ---- 6. data sets are replaced whole ------------------------------------------------------
@case
def a_killed_kitchen_generation_leaves_the_old_data_set(tmp_path, tiny, capsys, monkeypatch):
    from ivae.data.kitchen import generate_kitchen

    out = tmp_path / "kitchen"
    generate_kitchen(out, n=8, image_size=32, seed=0, progress=False, workers=1)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    script = (
        "import sys; from ivae.data.kitchen import generate_kitchen\n"
        "generate_kitchen(sys.argv[1], n=4000, image_size=32, seed=1, progress=False, workers=1)"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(out)])
    deadline = time.monotonic() + 120
    while explorer_data.count_images(out) < 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the old items beside the old images, nothing new among them
    assert list(tmp_path.glob(".kitchen.*.partial"))  # what the kill left, aside
    generate_kitchen(out, n=8, image_size=32, seed=2, progress=False, workers=1)
    assert not list(tmp_path.glob(".kitchen.*.partial"))  # removed by the next writer
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a data set")
    with pytest.raises(DataError, match="not a data set"):
        generate_kitchen(tmp_path / "mine", n=8, image_size=32, progress=False, workers=1)


@case
def write_directory_keeps_the_old_folder_on_failure(tmp_path, tiny, capsys, monkeypatch):
    from ivae.io import write_directory

    out = tmp_path / "set"
    write_directory(out, lambda tmp: (tmp / "a").write_text("old"))

    def half(tmp: Path) -> None:
        (tmp / "a").write_text("new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_directory(out, half)
    assert (out / "a").read_text() == "old" and not list(tmp_path.glob(".set.*"))


@case
def a_replaced_image_is_decoded_again(tmp_path, tiny, capsys, monkeypatch):
    folder = make_tiny_dataset(tmp_path / "d", n=20, size=16)
    first = load_dataset(folder, image_size=16).x[0].copy()
    Image.new("RGB", (16, 16), (0, 0, 0)).save(folder / "images" / "0000.png")
    assert not np.array_equal(load_dataset(folder, image_size=16).x[0], first)
    assert load_dataset(folder, image_size=16).x[0].max() == 0


# ---- 7. text from data and visitors shows as text ---------------------------------------
PLAIN = [
    ("![x](http://evil.example/a.png)", r"\!\[x\]\(http\:\/\/evil\.example\/a\.png\)"),
    ("[click](https://evil.example)", r"\[click\]\(https\:\/\/evil\.example\)"),
    ("see www.evil.example", r"see www\.evil\.example"),
    ("<img src=x onerror=alert(1)>", r"\<img src\=x onerror\=alert\(1\)\>"),
    ("*bold* _it_ **b** ~~s~~", r"\*bold\* \_it\_ \*\*b\*\* \~\~s\~\~"),
    ("# title", r"\# title"),
    ("$x^2$ and $$y$$", r"\$x\^2\$ and \$\$y\$\$"),
    (":red[alert] :material/home:", r"\:red\[alert\] \:material\/home\:"),
    ("`code` &amp; \\", r"\`code\` \&amp\; \\"),
    ("line one\n\n    two", "line one two"),
    ("plain soup 3", "plain soup 3"),
]


@case
def markdown_and_html_show_literally(tmp_path, tiny, capsys, monkeypatch):
    for text, expected in PLAIN:
        assert ui.plain(text) == expected
    assert ui.plain("a\n*b*", lines=True) == "a  \n\\*b\\*"
    assert ui.code("a`b") == "`` a`b ``"
    # image grids caption every image with its title, escaped
    shown = {}
    monkeypatch.setattr(ui.st, "image", lambda images, caption, width: shown.update(c=caption))
    ctx = SimpleNamespace(title=lambda row: "![x](http://evil.example/a.png)",
                          thumbnail=lambda row: "data:,")  # fmt: skip
    ui.image_grid(ctx, [0, 1])
    assert shown["c"] == [PLAIN[0][1]] * 2


EVIL_NAME = "![x](http://evil.example/a.png)"  # a remote image, if rendered as Markdown


def run_with_evil_factor_name(tmp_path, tiny, monkeypatch) -> tuple[Path, str]:
    """A copy of the tiny run whose first factor a visitor named EVIL_NAME, under a run root."""
    run = copy_run(tiny, tmp_path)
    notes = {"factors": [{"index": 0, "name": EVIL_NAME, "notes": "", "sign": 1}]}
    (run / "factors.json").write_text(json.dumps(notes))
    monkeypatch.setenv(explorer_runs.ROOTS_VARIABLE, str(tmp_path))
    return run, EVIL_NAME


@case
def titles_and_factor_names_render_as_text_on_the_pages(tmp_path, tiny, capsys, monkeypatch):
    run, name = run_with_evil_factor_name(tmp_path, tiny, monkeypatch)
    at = app(run)
    assert not at.exception
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert not any(name in t for t in texts)
    assert any(ui.plain(name) in t for t in texts)


@case
def factor_names_render_as_text_on_the_cards_and_the_report(tmp_path, tiny, capsys, monkeypatch):
    run, name = run_with_evil_factor_name(tmp_path, tiny, monkeypatch)
    for page in ("factor_cards", "model_report", "studio", "photo_reader", "atlas"):
        at = app(run, page)
        assert not at.exception, page
        texts = [m.value for m in at.markdown] + [c.value for c in at.caption]
        texts += [w.value for w in at.warning]
        assert not any(name in t for t in texts), page
    at = app(run, "factor_cards")
    assert at.selectbox(key="cards_factor").options[0] == f"{name} (factor 1)"  # plain text


@case
def titles_and_names_show_literally_in_the_atlas_charts(tmp_path, tiny, capsys, monkeypatch):
    from explorer import atlas

    evil = '<a href="http://evil.example">x</a> %{customdata}'
    table = pd.DataFrame({"map x": [0.0, 1.0], "map y": [0.0, 1.0], "row": [0, 1],
                          "title": [evil, "soup"], evil: [0.1, 0.2],
                          "dish type": [evil, "b"]})  # fmt: skip
    figure = atlas.map_figure(table, "map x", "map y", [evil, "dish type"], None, 0).to_json()
    panels = [{"name": evil, "kind": "categorical", "x": np.array([evil, "b"]),
               "all": np.array([0.5, 0.5]), "selected": np.array([1.0, 0.0])}]  # fmt: skip
    figure += atlas.selection_figure(panels).to_json()
    assert "<a href" not in figure and "%{customdata}" not in figure
    assert "&lt;a href=" in figure


# ---- 8. each broken file is one line naming it and the fix -------------------------------
@case
def truncated_codes_npz(tmp_path, tiny, capsys, monkeypatch):
    run = copy_run(tiny, tmp_path)
    codes = run / "index" / "codes.npz"
    codes.write_bytes(codes.read_bytes()[: codes.stat().st_size // 2])
    with pytest.raises(
        index_module.MissingIndexError, match=r"codes.npz is unreadable.*ivae index"
    ):
        index_module.load_index(ivae.load_run(run))
    at = app(run)
    assert not at.exception and "ivae index" in at.warning[0].value


@pytest.mark.parametrize("content", ['{"factors": {"a": 1}}', "[1, 2]", '{"factors": [3]}',
                                     '{"factors": [{"index": 99, "name": "x"}]}'])  # fmt: skip
def test_factors_json_of_the_wrong_shape(tmp_path, tiny, content):
    run = copy_run(tiny, tmp_path)
    (run / "factors.json").write_text(content)
    with pytest.raises(RunError, match="factors.json.*fix or delete"):
        _ = ivae.load_run(run).factor_names
    at = app(run)
    assert not at.exception and "factors.json" in shown(at.error[0].value)


@case
def factors_json_of_the_wrong_shape(tmp_path, tiny, capsys, monkeypatch):
    run = copy_run(tiny, tmp_path)
    (run / "factors.json").write_text('{"factors": {"a": 1}}')
    one_line(*cli(capsys, "index", run), "factors.json", "fix or delete")


@case
def malformed_history_csv(tmp_path, tiny, capsys, monkeypatch):
    run = copy_run(tiny, tmp_path)
    (run / "history.csv").write_text('epoch,train_loss\n1,2\n"unclosed,3\n4,5,6,7\n')
    with pytest.raises(RunError, match="history.csv is malformed.*restore it"):
        _ = ivae.load_run(run).history
    (run / "history.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RunError, match="history.csv is malformed"):
        _ = ivae.load_run(run).history
    monkeypatch.setenv(explorer_runs.ROOTS_VARIABLE, str(tmp_path))
    at = app(run, "model_report")  # the report says so in one line and shows the rest
    assert (
        not at.exception
        and len(at.error) == 1
        and "history.csv is malformed" in shown(at.error[0].value)
    )
    assert any("MCC" in m.value or "Health" in m.value for m in at.subheader)


@case
def corrupt_last_pt_on_resume(tmp_path, tiny, capsys, monkeypatch):
    npz = toy_npz(tmp_path / "toy.npz")
    out = tmp_path / "run"
    args = ["train", "--data", npz, "--model", "vae", "--out", out, "--epochs", "1", "--quiet"]
    assert cli(capsys, *args)[0] == 0
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:1000])
    one_line(*cli(capsys, *args, "--resume"), "last.pt is damaged", "new --out")
    (out / "last.pt").write_bytes(b"")
    one_line(*cli(capsys, *args, "--resume"), "last.pt is damaged")


@case
def disk_full_while_training(tmp_path, tiny, capsys, monkeypatch):
    npz = toy_npz(tmp_path / "toy.npz")
    out = tmp_path / "run"
    args = ["train", "--data", npz, "--model", "vae", "--out", out, "--epochs", "3", "--quiet"]
    real = torch.save
    calls = {"n": 0}

    def full(obj, handle, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 1:  # the first last.pt is written, then the disk fills
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, handle, *a, **kw)

    monkeypatch.setattr(torch, "save", full)
    one_line(*cli(capsys, *args), "last.pt", "disk is full", "previous file is intact")
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(torch, "save", real)
    assert cli(capsys, *args, "--resume")[0] == 0


@case
def decompression_bomb_in_a_data_set(tmp_path, tiny, capsys, monkeypatch):
    folder = make_tiny_dataset(tmp_path / "d", n=20, size=16)
    Image.new("RGB", (40, 40), "white").save(folder / "images" / "0003.png")  # 1,600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # so 1,600 is a bomb (> 1,000)
    data = load_dataset(folder, image_size=16)
    assert data.split[3] == "skipped" and (data.split != "skipped").sum() == 19
    assert "0003.png" in capsys.readouterr().err
    with pytest.raises(thumbs.MissingImageError, match="unreadable"):
        thumbs.thumbnail(folder / "images" / "0003.png")
    Image.new("RGB", (50, 50), "white").save(folder / "images" / "0004.png")  # > 2x: an error
    with pytest.raises(thumbs.MissingImageError, match="unreadable"):
        thumbs.thumbnail(folder / "images" / "0004.png")


@case
def one_huge_integer_label(tmp_path, tiny, capsys, monkeypatch):
    npz = toy_npz(tmp_path / "toy.npz", u=np.r_[np.arange(119) % 4, 10**12])
    status, err = cli(capsys, "train", "--data", npz, "--model", "vae", "--out", tmp_path / "r")
    one_line(status, err, "row 119", "label 1000000000000", "renumber")


# ---- 9. resuming, temp files, NaN truth, kitchen names -----------------------------------
@case
def a_resumed_epoch_history_is_exact(tmp_path, tiny, capsys, monkeypatch):
    data = load_dataset(toy_npz(tmp_path / "toy.npz"))
    tiny_train(data, tmp_path / "whole", epochs=2, checkpoint_seconds=0)
    step = Trainer.train_step

    def interrupted(self, batch):
        if self.epoch == 1 and self.step == 1:  # mid-epoch: after its first step
            raise KeyboardInterrupt
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tiny_train(data, tmp_path / "parts", epochs=2, checkpoint_seconds=0)
    monkeypatch.setattr(Trainer, "train_step", step)
    train(data, tmp_path / "parts", "vae", resume=True, progress=False)
    whole, parts = (pd.read_csv(tmp_path / n / "history.csv") for n in ("whole", "parts"))
    terms = [c for c in whole.columns if c.startswith(("train_", "val_"))]
    pd.testing.assert_frame_equal(whole[terms], parts[terms])


@case
def resume_refuses_changes_unless_allowed(tmp_path, tiny, capsys, monkeypatch):
    npz = toy_npz(tmp_path / "toy.npz")
    out = tmp_path / "run"
    args = ["train", "--data", npz, "--model", "vae", "--out", out, "--quiet"]
    assert cli(capsys, *args, "--epochs", "1")[0] == 0
    (out / "model.pt").unlink()  # as if interrupted after its first epoch
    for changed in (["--epochs", "2"], ["--lr", "0.01"], ["--model", "beta-vae"]):
        one_line(*cli(capsys, *args, *changed, "--resume"), "another configuration")
    one_line(*cli(capsys, *args, "--batch-size", "7", "--resume", "--allow-changes"),
             "batch_size")  # fmt: skip
    status, err = cli(
        capsys, *args, "--epochs", "2", "--lr", "0.002", "--resume", "--allow-changes"
    )
    assert status == 0, err
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["epochs"] == 2 and saved["lr"] == 0.002
    assert len(pd.read_csv(out / "history.csv")) == 2


@case
def checkpoint_intact_only_when_there_is_one(tmp_path, tiny, capsys, monkeypatch):
    from ivae.models.vae import VAE

    original = VAE.loss

    def poisoned(self, batch):
        terms = original(self, batch)
        terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(VAE, "loss", poisoned)
    data = load_dataset(toy_npz(tmp_path / "toy.npz"))
    with pytest.raises(TrainingError) as error:
        tiny_train(data, tmp_path / "run")
    message = str(error.value).lower()
    assert "intact" not in message and "no checkpoint was written yet" in message


@case
def orphaned_temp_files_are_cleaned(tmp_path, tiny, capsys, monkeypatch):
    target = tmp_path / "f.json"
    with pytest.raises(ZeroDivisionError):
        atomic_write(target, lambda f: 1 / 0)
    assert not list(tmp_path.glob(".*"))  # a failed write leaves nothing
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".f.json.{dead.pid}.abcd1234.tmp"  # a writer killed with -9
    live = tmp_path / f".f.json.{os.getppid()}.abcd1234.tmp"  # a writer still at work
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    atomic_write(target, lambda f: f.write(b"{}"))
    assert not stale.exists() and live.exists()
    # --resume removes what a killed trainer left in the run
    data = load_dataset(toy_npz(tmp_path / "toy.npz"))
    out = tmp_path / "run"
    tiny_train(data, out, epochs=1)
    left = out / f".history.csv.{dead.pid}.zz.tmp"
    left.write_bytes(b"half")
    (out / "model.pt").unlink()
    train(data, out, "vae", resume=True, progress=False)
    assert not left.exists()


@case
def nan_in_true_factors_is_an_error(tmp_path, tiny, capsys, monkeypatch):
    factors = np.random.default_rng(0).standard_normal((120, 2))
    factors[7, 1] = np.nan
    npz = toy_npz(tmp_path / "toy.npz", factors=factors)
    status, err = cli(capsys, "train", "--data", npz, "--model", "vae", "--out", tmp_path / "r")
    one_line(status, err, "row 7", "'factor 2'", "finite")
    from ivae.metrics import mcc

    with pytest.raises(ValueError, match="NaN"):
        mcc(factors, factors)


@case
def kitchen_in_a_name_generates_nothing(tmp_path, tiny, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "dataset.json").write_text(json.dumps({"name": "my-kitchen-photos", "n": 4}))
    config = {"data": {"path": str(tmp_path / "gone"), "name": "my-kitchen-photos", "n_items": 4}}
    run = SimpleNamespace(path=run_dir, config=config)
    run.data_dir = lambda root=None: ivae.run.Run.data_dir(run, root)
    calls = []
    with pytest.raises(FileNotFoundError, match="ivae index"):
        explorer_data.ensure_data(run, root=tmp_path, generate=lambda *a, **k: calls.append(a))
    assert calls == []
    assert not explorer_data.regenerable(run)


def test_every_case_of_the_table_is_here():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_fault(name, tmp_path, tiny, capsys, monkeypatch):
    CASES[name](tmp_path, tiny, capsys, monkeypatch)
