"""The Recipe1M importer on a tiny fixture in the real layout, and the streaming JSON reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ivae.data import recipe1m
from ivae.data.dataset import DataError
from ivae.data.paired import load_paired

FIXTURE = Path(__file__).parent / "fixtures" / "recipe1m"


def run(out, **kwargs) -> dict:
    args = {
        "layer1": FIXTURE / "layer1.json",
        "layer2": FIXTURE / "layer2.json",
        "images_dir": FIXTURE / "images",
        "out_dir": out,
        "image_size": 16,
        "progress": False,
    } | kwargs
    return recipe1m.import_recipe1m(**args)


def test_import_counts_what_it_skips(tmp_path):
    report = run(tmp_path)
    assert report["recipes_read"] == 6
    assert report["recipes_without_images"] == 1  # Gazpacho has no layer2 entry
    assert report["missing_image_files"] == 1  # the macaroni salad's only photo is gone
    assert report["recipes_without_existing_images"] == 1
    assert report["recipes_imported"] == report["rows"] == 4
    assert report["counts"] == {"train": 2, "val": 1, "test": 1}


def test_the_import_is_a_paired_directory(tmp_path):
    run(tmp_path)
    data = load_paired(tmp_path, image_size=16)
    assert data.factors is None and data.factor_names == []
    assert data.x.shape == (4, 3, 16, 16)
    row = data.items.set_index("id").loc["00004320bb"]
    assert row["title"] == "Crème Brûlée Français" and row["split"] == "val"
    assert row["text"].startswith("Crème Brûlée Français\n\nIngredients:\n- 500 ml double cream")
    assert "3. Bake in a bain-marie." in row["text"]
    assert list(row["ingredients"]) == ["500 ml double cream", "5 egg yolks", "100 g caster sugar"]
    info = json.loads((tmp_path / "dataset.json").read_text())
    assert info["factor_names"] == [] and info["skipped"]["missing_image_files"] == 1


def test_detected_ingredients_replace_the_lines(tmp_path):
    run(tmp_path, det_ingrs=FIXTURE / "det_ingrs.json")
    data = load_paired(tmp_path, image_size=16)
    row = data.items.set_index("id").loc["0000631d90"]
    assert list(row["ingredients"]) == ["breasts", "chillies", "sauce"]  # 'salt' is not valid
    assert "2 red chillies" in row["text"]


def test_all_images_gives_one_row_per_existing_photo(tmp_path):
    report = run(tmp_path, all_images=True)
    assert report["rows"] == 5 and report["missing_image_files"] == 2
    ids = load_paired(tmp_path, image_size=16).ids.tolist()
    assert "000018c8a5/3e233001e2" in ids and "000018c8a5/7f749987f9" in ids


def test_limit_caps_the_imported_recipes(tmp_path):
    report = run(tmp_path, limit=2)
    assert report["recipes_imported"] == 2 and report["rows"] == 2


def test_an_unreadable_photo_is_counted(tmp_path):
    images = tmp_path / "images"
    shutil.copytree(FIXTURE / "images", images)
    (images / "test/b/9/f/3/b9f3e1d2c4.jpg").write_bytes(b"not a jpeg")
    report = run(tmp_path / "out", images_dir=images)
    assert report["unreadable_image_files"] == 1 and report["rows"] == 3


def test_a_malformed_element_names_the_file_the_element_and_the_byte(tmp_path):
    raw = (FIXTURE / "layer1_malformed.json").read_bytes()
    byte = raw.index(b'"ingredients"', raw.index(b"Dilly"))
    with pytest.raises(DataError) as error:
        run(tmp_path, layer1=FIXTURE / "layer1_malformed.json")
    message = str(error.value)
    assert "layer1_malformed.json" in message and "element 1" in message
    assert f"byte {byte}" in message


@pytest.mark.parametrize(
    "record, words",
    [
        (
            {"id": "a", "title": "T", "ingredients": [], "instructions": [], "partition": "dev"},
            ["'dev'", "partition", "element 0"],
        ),
        ({"id": "a", "ingredients": [], "instructions": [], "partition": "train"}, ["'title'"]),
        (
            {
                "id": "a",
                "title": "T",
                "ingredients": ["salt"],
                "instructions": [],
                "partition": "train",
            },
            ["'ingredients'", '{"text": str}'],
        ),
        (["not", "an", "object"], ["element 0", "expected an object"]),
    ],
)
def test_a_bad_record_is_named(tmp_path, record, words):
    layer1 = tmp_path / "layer1.json"
    layer1.write_text(json.dumps([record]))
    with pytest.raises(DataError) as error:
        run(tmp_path / "out", layer1=layer1)
    assert all(word in str(error.value) for word in words), str(error.value)


ELEMENTS = [{"id": "é" * 3, "n": [1, 2, {"x": "ü"}]}, {"id": "b"}, [], "text, with ] inside"]


@pytest.mark.parametrize("chunk", [1, 5, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_streaming_reads_what_json_load_reads(tmp_path, monkeypatch, chunk, indent):
    monkeypatch.setattr(recipe1m, "CHUNK_CHARS", chunk)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ELEMENTS, indent=indent, ensure_ascii=False), encoding="utf-8")
    assert list(recipe1m.iter_json_array(path)) == ELEMENTS


@pytest.mark.parametrize(
    "text, element, byte",
    [
        ('[{"a": "é"}, {"b": 1 "c": 2}]', 1, len('[{"a": "é"}, {"b": 1 '.encode())),
        ('[{"a": 1}, {"b": 2}', 2, len(b'[{"a": 1}, {"b": 2}')),  # truncated
        ('[{"a": 1} {"b": 2}]', 1, len(b'[{"a": 1} ')),
        ('{"a": 1}', 0, 0),
        ('[{"a": 1}, {"b": "unterminated}]', 1, len(b'[{"a": 1}, {"b": ')),
    ],
)
@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_malformed_json_names_the_element_and_byte(
    tmp_path, monkeypatch, text, element, byte, chunk
):
    monkeypatch.setattr(recipe1m, "CHUNK_CHARS", chunk)
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as error:
        list(recipe1m.iter_json_array(path))
    assert f"element {element}" in str(error.value) and f"byte {byte}" in str(error.value)
    assert "bad.json" in str(error.value)


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(DataError, match="layer2.json: missing"):
        run(tmp_path, layer2=tmp_path / "layer2.json")
    with pytest.raises(DataError, match="not a directory"):
        run(tmp_path, images_dir=tmp_path / "nowhere")
