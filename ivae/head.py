"""Backbone runs: a frozen pretrained image backbone, then the Jacobian-regularized encoder
head trained on its cached features (issue 12; docs/method.md, "The model").

The head is the implicit iVAE's own vector encoder with x := the backbone's pooled features
(F = 1280 for EfficientNet-Lite0), so eq. 1's 1/2 log det(J J^T) is taken on an exact
k x F Jacobian per item, cheap at k = 8. The backbone runs once per image, in
``ivae features`` (cached, with the 8 flips and quarter turns), never in a training step.

A run's ``config.json`` records which backbone made its features::

    "backbone": {"name": ..., "weights_hash": ..., "image_size": ..., "feature_dim": ...}

and features from any other backbone, weights or image size are refused (BackboneMismatch).

Fine-tuning the last block (``ivae train --backbone efficientnet-lite0 --finetune-last-block``):
the cached features are then the map entering EfficientNet-Lite0's last block (the
``efficientnet-lite0-tail`` backbone), and the encoder is that block and the head convolution,
initialised from the ImageNet weights (``pretrained_tail``), followed by the MLP head; the
whole encoder trains, and eq. 1's Jacobian is taken with respect to that map. The earlier
blocks stay frozen and run once per image, as for the pooled features.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ivae.data.dataset import Dataset, MappedRows

RECORD_KEYS = ("name", "weights_hash", "image_size", "feature_dim")
# backbone -> (the backbone whose features feed a fine-tuned last block, the encoder option)
FINETUNED = {
    "efficientnet-lite0": ("efficientnet-lite0-tail", "efficientnet-lite0-tail"),
    "efficientnet-lite0-stages": (
        "efficientnet-lite0-stages-tail",
        "efficientnet-lite0-stages-tail",
    ),
}


class BackboneMismatch(ValueError):
    """Features or a backbone that differ from the ones a run was trained on."""


def backbone_record(source) -> dict:
    """What config.json keeps of a backbone (an ivae.backbones.Backbone, or a FeatureCache's
    meta): enough to rebuild it for new photos and to refuse another one later."""
    if isinstance(source, dict):
        keys = {"name": "backbone", "weights_hash": "weights_hash"}
        record = {key: source[keys.get(key, key)] for key in RECORD_KEYS}
    else:
        record = {key: getattr(source, key) for key in RECORD_KEYS}
    record["image_size"], record["feature_dim"] = (
        int(record["image_size"]),
        int(record["feature_dim"]),
    )
    return record


def check_backbone(expected: dict, found: dict, what: str) -> None:
    """Raise BackboneMismatch naming every field in which ``found`` differs from ``expected``."""
    differ = [
        f"{key} {found.get(key)!r} (the run's: {expected.get(key)!r})"
        for key in RECORD_KEYS
        if key in expected and key in found and expected[key] != found[key]
    ]
    if differ:
        raise BackboneMismatch(
            f"{what} come from another backbone than the run was trained on: "
            + ", ".join(differ)
            + f"; use the run's {expected['name']} weights ({expected.get('weights_hash')}), "
            f"or train a new run on these features"
        )


def load_backbone(record: dict):
    """The backbone a run's record names, at its image size; refused if its weights differ."""
    from ivae.backbones import get_backbone

    backbone = get_backbone(
        record["name"], weights=record.get("weights"), image_size=record["image_size"]
    )
    check_backbone(record, backbone_record(backbone), f"the {record['name']} weights found")
    return backbone


def finetune_last_block(name: str) -> tuple[str, str]:
    """``--finetune-last-block`` for backbone ``name``: the backbone to cache features of (the
    map entering the last block) and the implicit iVAE's ``encoder`` option that trains it."""
    if name not in FINETUNED:
        from ivae.backbones import BackboneError

        raise BackboneError(
            f"--finetune-last-block is available for {', '.join(FINETUNED)}; got {name!r} "
            "(train the head on its frozen features without the flag)"
        )
    return FINETUNED[name]


def pretrained_tail(model, record: dict | None) -> None:
    """Load the backbone's ImageNet weights into the fine-tuned tail of ``model``'s encoder,
    if it has one (a freshly built model; a resumed or loaded run's own weights replace them)."""
    from ivae.backbones.efficientnet_lite0 import EfficientNetLite0Tail

    tails = [m for m in model.modules() if isinstance(m, EfficientNetLite0Tail)]
    if not tails:
        return
    if record is None or record["name"] not in {tail for tail, _ in FINETUNED.values()}:
        raise BackboneMismatch(
            "a fine-tuned last block trains on the map entering it (the efficientnet-lite0-tail "
            "or -stages-tail backbone's features); train with --backbone efficientnet-lite0 "
            "(or efficientnet-lite0-stages) --finetune-last-block"
        )
    state = load_backbone(record).net.state_dict()
    for tail in tails:
        tail.load_pretrained(state)


def pretrained_network(model) -> dict | None:
    """Load EfficientNet-Lite0's ImageNet weights (the package's) into the whole-network
    encoder of a freshly built ``model`` (``encoder="efficientnet-lite0"``), and return what
    config.json keeps of them (``{"name", "weights_hash"}``); None for any other encoder."""
    from ivae.backbones import get_backbone
    from ivae.backbones.efficientnet_lite0 import EfficientNetLite0Encoder

    networks = [m for m in model.modules() if isinstance(m, EfficientNetLite0Encoder)]
    if not networks:
        return None
    backbone = get_backbone("efficientnet-lite0")
    state = backbone.net.state_dict()
    for network in networks:
        network.load_pretrained(state)
    return {"name": backbone.name, "weights_hash": backbone.weights_hash}


def feature_cache_of(
    data_dir: str | Path,
    name: str,
    weights: str | Path | None = None,
    image_size: int | None = None,
    progress: bool = True,
    views: int = 1,
):
    """The data set's FeatureCache: (N, V, F) float16 features of its items, V = 1 (the photo
    as it is) or 8 (its flips and quarter turns, view 0 the photo), computed once
    (ivae.features)."""
    from ivae.features import feature_cache

    return feature_cache(
        Path(data_dir), name, image_size=image_size, views=views, weights=weights, progress=progress
    )


def with_features(data: Dataset, cache, record: dict) -> tuple[Dataset, np.ndarray]:
    """``data`` with x := the view-0 features (N, F) float32, and every view (N, V, F) float16.

    Neither is read into memory: x is a ``MappedRows`` over the cache's view 0 (read as
    float32 a batch of rows at a time), the views the cache's memory map itself.

    The cache's rows must be the data's items in order, made by the ``record``'s backbone.
    """
    check_backbone(record, backbone_record(cache.meta), f"{data.source}: the cached features")
    ids = np.asarray(cache.ids).astype(str)
    if len(ids) != len(data) or not np.array_equal(ids, np.asarray(data.ids).astype(str)):
        raise BackboneMismatch(
            f"{data.source}: the feature cache holds other items than items.parquet "
            f"({len(ids)} vs {len(data)} rows); recompute it with "
            f"`ivae features {data.source} --backbone {record['name']}`"
        )
    views = cache.features  # (N, V, F) float16, memory-mapped
    x = MappedRows(views[:, 0], np.arange(len(views)), np.float32)
    split = data.split
    if cache.unreadable:  # photos the extraction could not decode: in no split, as in paired
        from ivae.data.paired import SKIPPED

        skipped = np.isin(np.arange(len(split)), sorted(cache.unreadable))
        split = np.where(skipped, SKIPPED, split)  # a wider string type than "train"
    return replace(data, x=x, x_kind="vector", split=split), views


def load_feature_data(
    path: str | Path,
    name: str,
    weights: str | Path | None = None,
    vocab=None,
    progress: bool = True,
    expected: dict | None = None,
    max_len: int = 256,
    views: int = 1,
) -> tuple[Dataset, np.ndarray, dict]:
    """A paired data set with its backbone features as x: (data, views, backbone record).

    ``views``: 1 (x alone, enough to encode and evaluate), or 8 to train under flips and
    quarter turns (each step draws one view per item; 8 times the extraction).

    ``expected``: the record of the run these features are for; features of another
    backbone, weights or image size are refused (BackboneMismatch).
    """
    from ivae.data import load_dataset

    if expected is not None and expected["name"] != name:
        check_backbone(expected, {"name": name}, f"the {name} backbone's features")
    image_size = expected["image_size"] if expected is not None else None
    # the photos are read by the feature extraction alone: no image cache is decoded
    data = load_dataset(path, vocab=vocab, max_len=max_len, images=False)
    cache = feature_cache_of(data.source or path, name, weights, image_size, progress, views)
    record = backbone_record(cache.meta)
    if expected is not None:
        check_backbone(expected, record, f"the {name} features of {data.source or path}")
    data, views = with_features(data, cache, record)
    return data, views, record


def encoder_summary(config: dict) -> str:
    """The image encoder of a run, in words, from its config.json (the model report shows it)."""
    text = network_summary(config)
    if config.get("model_config", {}).get("symmetry") == "dihedral":
        text += "; a photo's codes are the mean of its 8 flips' and quarter turns' codes"
    return text


def network_summary(config: dict) -> str:
    x = config["data"]["x"]
    backbone = config.get("backbone")
    if backbone and backbone["name"] in {tail for tail, _ in FINETUNED.values()}:
        return (
            f"{backbone['name'].removesuffix('-tail')} (pretrained; frozen up to its last "
            f"block, which trains with the head; weights {backbone['weights_hash']}, "
            f"{backbone['image_size']}-px photos), then an MLP head on its pooled features"
        )
    if backbone:
        return (
            f"{backbone['name']} (pretrained, frozen; weights {backbone['weights_hash']}, "
            f"{backbone['image_size']}-px photos) and the encoder head, an MLP on its "
            f"{backbone['feature_dim']} features"
        )
    pretrained = config.get("pretrained")
    if pretrained:
        return (
            f"{pretrained['name']} (started from its ImageNet weights "
            f"{pretrained['weights_hash']}, every layer fine-tuned with the head on "
            f"{x['shape'][-1]}-px photos), then an MLP head on its pooled features"
        )
    if x["kind"] == "image":
        return f"a CNN trained from scratch on {x['shape'][-1]}-px photos"
    return f"an encoder on {x['shape'][0]}-dimensional vectors"
