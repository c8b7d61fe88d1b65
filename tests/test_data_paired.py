"""Paired image/text directories: round trip, image cache, and clear validation errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ivae.data.dataset import DataError
from ivae.data.paired import load_paired, write_paired
from ivae.data.text import Vocab

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]


def make_dataset(directory, n: int = 4) -> pd.DataFrame:
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (20, 20), COLOURS[i % 4]).save(directory / "images" / f"{i}.png")
        rows.append(
            {
                "id": f"item{i}",
                "image": f"images/{i}.png",
                "text": f"a red soup number {i}",
                "split": ["train", "train", "val", "test"][i % 4],
                "factor.redness": i / n,
                "nuisance.tilt": -float(i),
            }
        )
    items = pd.DataFrame(rows)
    items.loc[3, "text"] = "onlyintest soup"
    write_paired(directory, items, {"name": "tiny", "factor_names": ["redness"]})
    return items


def test_round_trip(tmp_path):
    items = make_dataset(tmp_path)
    data = load_paired(tmp_path, image_size=8)
    assert data.name == "tiny" and data.x_kind == "image" and data.y_kind == "text"
    assert data.x.shape == (4, 3, 8, 8) and data.x.dtype == np.uint8
    assert data.x[0, 0].mean() > 150 and data.x[0, 2].mean() < 60  # the red image is red
    assert data.ids.tolist() == items["id"].tolist()
    assert data.factors[:, 0].tolist() == pytest.approx([0, 0.25, 0.5, 0.75])
    assert data.nuisance_names == ["tilt"] and data.nuisances[3, 0] == -3
    info = json.loads((tmp_path / "dataset.json").read_text())
    assert info["counts"] == {"train": 2, "val": 1, "test": 1}


def test_the_vocabulary_comes_from_the_train_split_unless_given(tmp_path):
    make_dataset(tmp_path)
    data = load_paired(tmp_path, image_size=8)
    assert "onlyintest" not in data.vocab.tokens and "soup" in data.vocab.tokens
    given = Vocab(["<pad>", "<unk>", "onlyintest"])
    assert load_paired(tmp_path, image_size=8, vocab=given, max_len=3).y[3].tolist() == [2, 1, 0]


def test_images_are_cached_per_size_and_invalidated_by_new_items_or_images(tmp_path):
    items = make_dataset(tmp_path)
    load_paired(tmp_path, image_size=8)
    cache = tmp_path / ".cache" / "images-8.npy"
    assert cache.is_file()
    decoded = cache.stat().st_mtime_ns
    assert load_paired(tmp_path, image_size=8).x[0].max() > 150  # the cached red
    assert cache.stat().st_mtime_ns == decoded  # read, not decoded again
    Image.new("RGB", (20, 20), (0, 0, 0)).save(tmp_path / "images" / "0.png")
    assert load_paired(tmp_path, image_size=8).x[0].max() < 10  # a replaced photo is noticed
    Image.new("RGB", (20, 20), (255, 0, 0)).save(tmp_path / "images" / "0.png")
    write_paired(tmp_path, items.assign(text="changed"), {"name": "tiny", "factor_names": []})
    assert load_paired(tmp_path, image_size=8).x[0].max() > 150  # decoded afresh


def remove_info(d):
    (d / "dataset.json").unlink()


def remove_items(d):
    (d / "items.parquet").unlink()


def rewrite(change):
    def edit(d):
        items = pd.read_parquet(d / "items.parquet")
        items = change(items)
        items.to_parquet(d / "items.parquet", index=False)

    return edit


def set_cell(column, value):
    def change(items):
        items[column] = items[column].astype(object)
        items.loc[2, column] = value
        return items

    return change


def bad_info(d):
    (d / "dataset.json").write_text('{"name": "tiny", "factor_names": ["redness", "saltiness"]}')


def every_image_broken(d):
    for path in (d / "images").glob("*.png"):
        path.write_bytes(b"not a png")


@pytest.mark.parametrize(
    "damage, words",
    [
        (remove_info, ["dataset.json", "missing"]),
        (remove_items, ["items.parquet", "missing"]),
        (rewrite(lambda items: items.drop(columns="text")), ["items.parquet", "'text'", "column"]),
        (rewrite(set_cell("id", "item0")), ["duplicate id", "'item0'"]),
        (rewrite(set_cell("split", "training")), ["row 2", "'item2'", "'training'", "train"]),
        (rewrite(set_cell("image", "images/gone.png")), ["'item2'", "gone.png", "missing"]),
        (every_image_broken, ["none of the 4 images", ".png", "check the image files"]),
        (bad_info, ["factor.saltiness", "factor_names"]),
        (rewrite(set_cell("factor.redness", np.nan)), ["row 2", "non-finite"]),
        (rewrite(set_cell("text", None)), ["row 2", "'text'", "string"]),
    ],
)
def test_a_damaged_directory_fails_with_a_message_that_says_where(tmp_path, damage, words):
    make_dataset(tmp_path)
    damage(tmp_path)
    with pytest.raises(DataError) as error:
        load_paired(tmp_path, image_size=8)
    for word in words:
        assert word in str(error.value)


def test_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_paired(tmp_path / "nothing")


def test_write_paired_refuses_items_without_the_required_columns(tmp_path):
    with pytest.raises(DataError, match="split"):
        write_paired(tmp_path, pd.DataFrame({"id": ["a"], "image": ["a.png"], "text": ["t"]}), {})


def test_token_ids_are_int32_memory_mapped_and_written_once_per_items_and_vocabulary(tmp_path):
    make_dataset(tmp_path)
    data = load_paired(tmp_path, image_size=8)
    texts = pd.read_parquet(tmp_path / "items.parquet")["text"]
    expected = data.vocab.encode(texts)
    used = int((expected > 0).sum(1).max())  # the all-padding tail is dropped
    assert data.y.dtype == np.int32 and isinstance(data.y, np.memmap)
    assert np.array_equal(data.y, expected[:, :used]) and data.y.shape == (4, used)
    (cache,) = (tmp_path / ".cache").glob("tokens-*.npy")
    written = cache.stat().st_mtime_ns
    assert np.array_equal(load_paired(tmp_path, image_size=8).y, data.y)
    assert cache.stat().st_mtime_ns == written  # reused
    other = Vocab(["<pad>", "<unk>", "soup"])  # another vocabulary: its own file
    assert load_paired(tmp_path, image_size=8, vocab=other).y[:, :3].tolist()[3] == [1, 2, 0]
    assert len(list((tmp_path / ".cache").glob("tokens-*.npy"))) == 2
    items = make_dataset(tmp_path)
    items.loc[0, "text"] = "soup soup soup soup soup soup soup soup soup"
    write_paired(tmp_path, items, {"name": "tiny", "factor_names": ["redness"]})
    again = load_paired(tmp_path, image_size=8, vocab=other)  # new items: written again
    assert again.y[0].tolist() == [2] * 9 and again.y.shape == (4, 9)
    assert not list((tmp_path / ".cache").glob("*.partial"))


def test_a_duplicate_id_in_another_batch_of_a_long_table_is_refused(tmp_path, monkeypatch):
    from ivae.data import table

    monkeypatch.setattr(table, "BATCH_ROWS", 2)  # the mapped table is validated per batch
    items = make_dataset(tmp_path)
    items.loc[3, "id"] = "item0"
    write_paired(tmp_path, items, {"name": "tiny", "factor_names": ["redness"]})
    with pytest.raises(DataError, match="duplicate id 'item0'"):
        load_paired(tmp_path, image_size=8)
    items.loc[3, ["id", "split"]] = ["item3", "later"]
    write_paired(tmp_path, items, {"name": "tiny", "factor_names": ["redness"]})
    with pytest.raises(DataError, match="row 3 .*split 'later'"):  # the table's row
        load_paired(tmp_path, image_size=8)


def test_the_content_digest_does_not_depend_on_the_rows_read_at_a_time(tmp_path, monkeypatch):
    """The items' digest is read a batch of rows at a time (flat memory); the batch size must
    not change it, and any changed text must."""
    import ivae.data.paired as paired
    from tests.tiny_run import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "data")
    whole = paired.items_content_digest(data)
    monkeypatch.setattr(paired, "DIGEST_ROWS", 7)  # 240 rows: 35 batches, the last short
    paired._content_digest.cache_clear()  # read the table again, 7 rows at a time
    assert paired.items_content_digest(data) == whole
    items = pd.read_parquet(data / "items.parquet")
    items.loc[100, "text"] += " salt"
    items.to_parquet(data / "items.parquet", index=False)
    assert paired.items_content_digest(data) != whole


def test_the_content_digest_is_read_once_per_version_of_the_table(tmp_path):
    import ivae.data.paired as paired
    from tests.tiny_run import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "data")
    paired._content_digest.cache_clear()
    first = paired.items_content_digest(data)
    assert paired.items_content_digest(data) == first
    assert paired._content_digest.cache_info().misses == 1  # the second call read nothing
    items = pd.read_parquet(data / "items.parquet")
    items.loc[5, "text"] = items.loc[5, "text"].upper()  # the same size, other texts
    write_paired(data, items, json.loads((data / "dataset.json").read_text()))
    assert paired.items_content_digest(data) != first
    with pytest.raises(DataError, match="items.parquet"):
        paired.items_content_digest(tmp_path / "nowhere")
