"""`ivae read-photo RUN PHOTO... [--json]`: factors, percentiles and unfamiliarity per photo;
a file that cannot be read gets one sentence instead, the others are still read (exit 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from checked_run import make_checked_run, real_photo_jpeg

from ivae.cli import main
from ivae.familiarity import FAMILIARITY_FILE


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_checked_run(tmp_path_factory.mktemp("checked"))


@pytest.fixture(scope="module")
def photos(run_dir, tmp_path_factory) -> dict[str, Path]:
    """Two of the run's own test dishes, a real photo and three bad files."""
    folder = tmp_path_factory.mktemp("photos")
    data = Path(json.loads((run_dir / "config.json").read_text())["data"]["path"])
    coffee = real_photo_jpeg()
    files = {
        "dish1": data / "images" / "0009.png",  # rows 9 and 19: the test split (i % 10 == 9)
        "dish2": data / "images" / "0019.png",
        "coffee": folder / "coffee.jpg",
        "corrupt": folder / "corrupt.jpg",
        "text": folder / "notes.jpg",
        "missing": folder / "nowhere.jpg",
    }
    files["coffee"].write_bytes(coffee)
    files["corrupt"].write_bytes(coffee[: len(coffee) // 3])
    files["text"].write_text("this is a shopping list, not a photo\n")
    return files


def read(capsys, run_dir, *paths, as_json=True) -> tuple[int, object, str]:
    status = main(["read-photo", str(run_dir), *map(str, paths), *(["--json"] if as_json else [])])
    out, err = capsys.readouterr()
    return status, json.loads(out) if as_json else out, err


def test_good_photos_are_read(capsys, run_dir, photos):
    status, results, err = read(capsys, run_dir, photos["dish1"], photos["dish2"])
    assert status == 0 and err == ""
    assert [r["path"] for r in results] == [str(photos["dish1"]), str(photos["dish2"])]
    for result in results:
        assert set(result) == {
            "path",
            "factors",
            "percentiles",
            "unfamiliar",
            "unfamiliarity",
            "threshold",
        }
        assert set(result["factors"]) == set(result["percentiles"]) and len(result["factors"]) == 3
        assert all(0 <= p <= 100 for p in result["percentiles"].values())
        assert result["unfamiliar"] == (result["unfamiliarity"] > result["threshold"])
        assert not result["unfamiliar"], "a dish of the run's own data is familiar"


def test_a_real_photo_is_unfamiliar_and_still_read(capsys, run_dir, photos):
    status, (result,), _ = read(capsys, run_dir, photos["coffee"])
    assert status == 0
    assert result["unfamiliar"] and result["unfamiliarity"] > result["threshold"]
    assert len(result["factors"]) == 3  # the values are still given


@pytest.mark.parametrize(
    "bad, says",
    [
        ("corrupt", "damaged or truncated"),
        ("missing", "does not exist"),
        ("text", "not an image"),
    ],
)
def test_a_bad_file_gets_one_sentence(capsys, run_dir, photos, bad, says):
    status, (result,), err = read(capsys, run_dir, photos[bad])
    assert status == 1 and "Traceback" not in err
    assert set(result) == {"path", "error"} and result["path"] == str(photos[bad])
    assert says in result["error"] and "\n" not in result["error"]


def test_a_mixed_list_reads_the_good_ones_in_order(capsys, run_dir, photos):
    order = ["dish1", "missing", "coffee", "text", "corrupt", "dish2"]
    status, results, err = read(capsys, run_dir, *(photos[name] for name in order))
    assert status == 1 and "Traceback" not in err
    assert [r["path"] for r in results] == [str(photos[name]) for name in order]
    assert ["error" in r for r in results] == [False, True, False, True, True, False]
    assert [r.get("unfamiliar") for r in results if "error" not in r] == [False, True, False]


def test_the_table_says_which_photo_is_unfamiliar(capsys, run_dir, photos):
    status, out, _ = read(
        capsys, run_dir, photos["dish1"], photos["coffee"], photos["text"], as_json=False
    )
    assert status == 1
    blocks = out.split("\n\n")
    assert blocks[0].startswith(f"{photos['dish1']}: familiar")
    assert blocks[1].startswith(f"{photos['coffee']}: UNFAMILIAR")
    assert "extrapolations" in blocks[1]
    assert blocks[2].startswith(f"{photos['text']}: error:")


def test_a_run_without_the_check_says_how_to_build_it(capsys, run_dir, photos, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    (bare / FAMILIARITY_FILE).unlink()
    status = main(["read-photo", str(bare), str(photos["dish1"])])
    _, err = capsys.readouterr()
    assert status == 2 and f"ivae index {bare}" in err and len(err.strip().splitlines()) == 1


def test_a_vector_run_is_refused_in_one_line(capsys, toy_npz, tmp_path, photos):
    run = tmp_path / "toy-run"
    train = ["train", "--data", toy_npz, "--model", "vae", "--out", str(run), "--epochs", "1"]
    assert main([*train, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["read-photo", str(run), str(photos["dish1"])]) == 2
    err = capsys.readouterr().err
    assert "encodes vectors, not photos" in err and len(err.strip().splitlines()) == 1
