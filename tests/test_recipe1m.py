"""The Recipe1M importer on a tiny fixture in the real layout, and the streaming JSON reader."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import ijson
import pytest

from ivae.cli import main
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


def test_the_command_imports_with_detected_ingredients(tmp_path, capsys):
    paths = [FIXTURE / name for name in ("layer1.json", "layer2.json", "det_ingrs.json")]
    argv = ["data", "recipe1m", "--layer1", paths[0], "--layer2", paths[1], "--det-ingrs"]
    argv += [paths[2], "--images", FIXTURE / "images", "--out", tmp_path / "r1m"]
    assert main([str(a) for a in argv]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 4
    items = load_paired(tmp_path / "r1m", image_size=16).items.set_index("id")
    assert list(items.loc["000018c8a5", "ingredients"]) == ["penne", "Sauce", "grated"]


def test_the_command_reports_a_corrupt_file_in_one_line(tmp_path, capsys):
    argv = ["data", "recipe1m", "--layer1", FIXTURE / "layer1_malformed.json", "--layer2"]
    argv += [FIXTURE / "layer2.json", "--images", FIXTURE / "images", "--out", tmp_path]
    assert main([str(a) for a in argv]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("ivae: error: ") and "layer1_malformed.json: malformed JSON" in error
    assert "(array element 1)" in error and error.endswith("download it again")


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
    start = raw.index(b'"ingredients"', raw.index(b"Dilly"))  # the key after a missing comma
    with pytest.raises(DataError) as error:
        run(tmp_path, layer1=FIXTURE / "layer1_malformed.json")
    message = str(error.value)
    assert "layer1_malformed.json" in message and "element 1" in message
    assert start <= error_byte(message) < start + len(b'"ingredients"')


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


def backends() -> list:
    """ijson's C backend when it is installed, and always the pure-Python fallback."""
    names = ["python"]
    try:
        ijson.get_backend("yajl2_c")
        names.insert(0, "yajl2_c")
    except ImportError:
        pass
    return names


BACKENDS = backends()
READ_SIZES = [1, 2, 3, 7, 64, 4096, 1 << 20]

# every kind of JSON value, literals and numbers included: a true, false, null or number that
# straddles two reads must come back whole
ELEMENTS = [
    {"id": "é" * 3, "n": [1, 2, {"x": "ü"}], "valid": [True, False, True, True]},
    {"id": "b", "note": None, "flags": [False, None, True]},
    [0, -1, 42, 9007199254740993, -(2**62), 3.25, -0.5, 1e-7, 6.02e23, 1.5e300],
    'a quote " a backslash \\ a slash / an é, a tab\t and an emoji 😀',
    "text, with ] inside and {braces}",
    "日本語のレシピ: crème brûlée, jalapeño, Smørrebrød",
    [],
    {},
    True,
    False,
    None,
    0,
    "",
]
# spellings json.dumps never writes: upper-case exponents, escapes of plain characters
RAW = (
    r'[1E5, 2e-3, 2E+2, -0, 10, 0.1, true,false,null, "\"\\\/\u00e9\ud83d\ude00",'
    r' "\n\t\b\f\r", {"valid":[true,false,null]}]'
)


def read(path, chunk: int, backend: str) -> list:
    return list(recipe1m.iter_json_array(path, chunk, ijson.get_backend(backend)))


def same(values: list, expected: list) -> bool:
    """Equal and of the same types (repr tells 1 from True and 0.5 from Decimal('0.5'))."""
    return repr(values) == repr(expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk", READ_SIZES)
@pytest.mark.parametrize("ascii_only", [True, False])  # \u escapes and surrogate pairs, or UTF-8
@pytest.mark.parametrize("indent", [None, 1])
def test_streaming_reads_what_json_load_reads(tmp_path, backend, chunk, ascii_only, indent):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ELEMENTS, indent=indent, ensure_ascii=ascii_only), encoding="utf-8")
    assert same(read(path, chunk, backend), json.loads(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_read_size_reads_literals_numbers_and_escapes(tmp_path, backend):
    path = tmp_path / "raw.json"
    path.write_text(RAW, encoding="utf-8")
    expected = json.loads(RAW)
    assert expected[9] == '"\\/é😀'  # the file spells what the test means
    for chunk in range(1, len(RAW.encode()) + 2):
        assert same(read(path, chunk, backend), expected), f"read size {chunk}"


def det_ingrs(n: int) -> list[dict]:
    """Records shaped like Recipe1M's det_ingrs.json: a boolean 'valid' flag per ingredient."""
    words = ["salt", "penne", "crème fraîche", "chillies", "olive oil", "breasts", "sugar"]
    return [
        {
            "id": f"{i:010x}",
            "ingredients": [{"text": words[(i + k) % 7]} for k in range(5 + i % 15)],
            "valid": [(i * 7 + k) % 3 != 0 for k in range(5 + i % 15)],
        }
        for i in range(n)
    ]


def test_a_det_ingrs_shaped_file_is_read_in_full(tmp_path):
    records = det_ingrs(40_000)
    path = tmp_path / "det_ingrs.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    assert path.stat().st_size > 4 * recipe1m.CHUNK_BYTES  # literals straddle many reads
    detected = list(recipe1m.detected(path))
    assert len(detected) == len(records)
    for (recipe_id, kept), record in zip(detected, records, strict=True):
        names = [x["text"] for x, ok in zip(record["ingredients"], record["valid"], strict=True)]
        assert recipe_id == record["id"]
        assert kept == [name for name, ok in zip(names, record["valid"], strict=True) if ok]


def error_byte(message: str) -> int:
    return int(re.search(r"at byte (\d+) ", message)[1])


def read_error(path, chunk: int, backend: str) -> str:
    with pytest.raises(DataError) as error:
        read(path, chunk, backend)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "download it again" in message
    return message


@pytest.mark.parametrize(
    "text, element, byte",
    [
        ('[{"a": 1}, {"b": 2}', 2, len(b'[{"a": 1}, {"b": 2}')),
        (
            '[{"a": "é"}, {"b": "unterminated}]',
            1,
            len('[{"a": "é"}, {"b": "unterminated}]'.encode()),
        ),
        ("[true, false, tr", 2, len(b"[true, false, tr")),
        ("[1.5, 2e", 1, len(b"[1.5, 2e")),
        ("[", 0, 1),
        ("", 0, 0),
    ],
)
@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_truncated_file_names_the_element_and_the_end(
    tmp_path, text, element, byte, chunk, backend
):
    path = tmp_path / "cut.json"
    path.write_text(text, encoding="utf-8")
    message = read_error(path, chunk, backend)
    assert f"element {element}" in message and error_byte(message) == byte, message
    assert "end of file" in message or "expected '['" in message


@pytest.mark.parametrize(
    "text, element, start, end",
    [
        ('[{"a": "é"}, {"b": 1 "c": 2}]', 1, 22, 24),  # é is two bytes; '"c"' is 22-24
        ('[{"a": 1} {"b": 2}]', 1, 10, 10),
        ('{"a": 1}', 0, 0, 0),
        ("  [true, flase]", 1, 9, 14),
        ("[null, nul1, 3]", 1, 7, 11),
        ("[1, 2]]", 2, 6, 6),
    ],
)
@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_corrupt_file_names_the_element_and_the_byte(
    tmp_path, text, element, start, end, chunk, backend
):
    """The byte is where the parser stopped: inside the token that broke the JSON."""
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    message = read_error(path, chunk, backend)
    assert f"element {element}" in message and start <= error_byte(message) <= end, message


@pytest.mark.parametrize("backend", BACKENDS)
def test_corruption_deep_in_a_large_file_is_pinned(tmp_path, backend):
    raw = json.dumps(det_ingrs(3500)).encode()
    target = raw.index(b'"id": "0000000bb8"')  # element 3000, past several reads
    flag = raw.index(b"true", target)
    path = tmp_path / "det_ingrs.json"
    path.write_bytes(raw[:flag] + b"tru" + raw[flag + 4 :])  # 'tru,' or 'tru]': a broken literal
    message = read_error(path, 1 << 15, backend)
    assert flag > 10 * (1 << 15)
    assert "element 3000" in message and flag <= error_byte(message) <= flag + 4, message


def test_a_runaway_element_is_an_error_not_a_memory_blowup(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe1m, "MAX_ELEMENT_BYTES", 100)
    path = tmp_path / "runaway.json"
    path.write_text('[{"a": 1}, {"b": "' + "x" * 1000 + '"}]', encoding="utf-8")
    with pytest.raises(DataError, match="element 1.*longer than 100 bytes"):
        list(recipe1m.iter_json_array(path, 16))


def test_reading_stops_early_without_reading_the_rest(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ELEMENTS) + " garbage", encoding="utf-8")
    assert next(iter(recipe1m.iter_json_array(path, 4))) == ELEMENTS[0]


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(DataError, match="layer2.json: missing"):
        run(tmp_path, layer2=tmp_path / "layer2.json")
    with pytest.raises(DataError, match="not a directory"):
        run(tmp_path, images_dir=tmp_path / "nowhere")


def test_the_image_index_finds_every_recipe_across_chunks(tmp_path):
    layer2 = [
        {"id": "b2", "images": [{"id": "b2.jpg"}, {"id": "b2x.jpg"}]},
        {"id": "a1", "images": [{"id": "a1.jpg"}]},
        {"id": "c3", "images": []},
        {"id": "a1", "images": [{"id": "a1-again.jpg"}]},  # repeated: the last record counts
    ]
    path = tmp_path / "layer2.json"
    path.write_text(json.dumps(layer2))
    index = recipe1m.image_index(path, all_images=True, progress=False, chunk=2)
    assert len(index) == 3 and index.get("b2") == ["b2.jpg", "b2x.jpg"]
    assert index.get("a1") == ["a1-again.jpg"] and index.get("c3") == []
    assert index.get("zz") == [] and index.get("a") == []
