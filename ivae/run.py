"""Run directories and the Python API: ``ivae.load_run(path)``."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ivae.checkpoint import CONFIG_VERSION
from ivae.data.dataset import Dataset
from ivae.encoding import encode_batched
from ivae.io import write_json
from ivae.models.base import Model, UnknownModel, build_model
from ivae.nets import Modality


class RunError(ValueError):
    """A run directory is missing, unfinished or incompatible; the message says what to do."""


def _read_json(path: Path, default=None):
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc}); restore or delete the file") from exc


def read_vocab(path: Path, config: dict):
    """The run's vocabulary (``vocab.json``), part of a run whose queries are text: its
    token ids are what the model was trained on, so a missing or damaged file is a RunError
    (a vocabulary rebuilt from other data would silently give other ids). None for a run
    whose queries are vectors."""
    y = config.get("data", {}).get("y", {})
    if y.get("kind") != "text":
        return None
    from ivae.data.text import Vocab

    file = Path(path) / "vocab.json"
    fix = "restore it from a copy of the run, or retrain the run"
    if not file.is_file():
        raise RunError(f"{file} is missing: the run's recipes cannot be encoded as trained; {fix}")
    try:
        vocab = Vocab.from_json(json.loads(file.read_text()))
    except (ValueError, TypeError) as error:
        raise RunError(f"{file} is damaged ({error}); {fix}") from None
    if y.get("vocab_size") and len(vocab) != y["vocab_size"]:
        raise RunError(
            f"{file} holds {len(vocab)} tokens but the model was trained on {y['vocab_size']}; "
            f"{fix}"
        )
    return vocab


class Run:
    """A trained model with its data source, history, metrics and researcher's notes."""

    def __init__(self, path: Path, config: dict, model: Model):
        self.path, self.config, self.model = path, config, model
        self.model_name: str = config["model"]
        self.latent_dim: int = model.config.latent_dim
        self.x_kind: str = config["data"]["x"]["kind"]
        self.y_kind: str = config["data"]["y"]["kind"]
        self.image_size: int = config["data"]["x"]["shape"][-1] if self.x_kind == "image" else 0
        # A backbone run (ivae.head): x is the features of this frozen backbone, not pixels
        self.backbone: dict | None = config.get("backbone")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, model={self.model_name!r}, k={self.latent_dim})"

    # ---- what the run knows ------------------------------------------------------------
    @cached_property
    def vocab(self):
        """The run's vocabulary (None for vector queries); RunError when it is missing."""
        return read_vocab(self.path, self.config)

    @property
    def history(self) -> pd.DataFrame:
        path = self.path / "history.csv"
        if not path.exists():
            return pd.DataFrame()
        try:
            history = pd.read_csv(path)
        except (ValueError, OSError, UnicodeDecodeError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise RunError(
                f"{path} is malformed ({reason}); restore it, or delete it to show the run "
                "without its training curves"
            ) from None
        if "epoch" not in history.columns:
            raise RunError(
                f"{path} is malformed (no 'epoch' column); restore it, or delete it to show "
                "the run without its training curves"
            )
        return history

    @property
    def metrics(self) -> dict:
        metrics = _read_json(self.path / "metrics.json", {})
        if not isinstance(metrics, dict):
            raise RunError(f"{self.path / 'metrics.json'}: not a JSON object; restore the file")
        return metrics

    def factor_notes(self) -> dict:
        by_index = _factor_entries(self.path / "factors.json", self.latent_dim)
        return {
            "factors": [
                {
                    "index": i,
                    "name": by_index.get(i, {}).get("name", f"factor {i + 1}"),
                    "notes": by_index.get(i, {}).get("notes", ""),
                    "sign": by_index.get(i, {}).get("sign", 1),
                }
                for i in range(self.latent_dim)
            ]
        }

    def save_factor_notes(self, notes: dict) -> None:
        write_json(self.path / "factors.json", notes)

    @property
    def factor_names(self) -> list[str]:
        return [f["name"] for f in self.factor_notes()["factors"]]

    @cached_property
    def signs(self) -> np.ndarray:
        """(k,) +-1 per factor, from factors.json: the direction a researcher chose for each
        axis ("more wateriness" to the right). Scores are unchanged by it."""
        return np.array(
            [1.0 if f.get("sign", 1) >= 0 else -1.0 for f in self.factor_notes()["factors"]],
            dtype=np.float32,
        )

    def data_dir(self, root: str | Path | None = None) -> Path:
        """Where this run's data lives: the path in config.json, as given at training.

        A relative path is taken from ``root`` (default: the working folder). An absolute
        path that no longer exists (a run copied from another machine) is looked for as
        ``root/data/<its name>``, where ``ivae data ... --out data/NAME`` puts data sets.
        """
        configured = Path(self.config["data"]["path"])
        base = Path.cwd() if root is None else Path(root)
        if not configured.is_absolute():
            return base / configured
        if configured.exists() or root is None:
            return configured
        return base / "data" / configured.name

    def load_data(self, path: str | Path | None = None) -> Dataset:
        """The run's data (or another data set in its format); a backbone run's x is then the
        cached backbone features (N, F), computed once if missing."""
        from ivae.data import load_dataset

        if self.backbone is not None:
            from ivae.head import load_feature_data

            data, _, _ = load_feature_data(
                path or self.data_dir(),
                self.backbone["name"],
                self.backbone.get("weights"),
                vocab=self.vocab,
                max_len=self._max_len(),
                expected=self.backbone,
            )
            return data
        return load_dataset(
            path or self.data_dir(),
            vocab=self.vocab,
            image_size=self.image_size or 64,
            max_len=self._max_len(),
        )

    def _max_len(self) -> int:
        y = self.config["data"]["y"]
        return y["shape"][0] if y["kind"] == "text" else 256

    # ---- encoding ----------------------------------------------------------------------
    @cached_property
    def image_backbone(self):
        """The frozen backbone of a backbone run, checked against the one it was trained on."""
        if self.backbone is None:
            raise RunError(f"{self.path}: this run encodes pixels itself; it has no backbone")
        from ivae.head import BackboneMismatch, load_backbone

        try:
            return load_backbone(self.backbone)
        except BackboneMismatch as error:
            raise RunError(f"{self.path}: {error}") from None

    def image_features(self, images) -> np.ndarray:
        """Photos (PIL images, or uint8 (N,H,W,3) / (N,3,H,W)) -> (N, F) float32 backbone
        features, the head's input (backbone runs only)."""
        if isinstance(images, list | tuple) and not images:
            return np.zeros((0, self.backbone["feature_dim"]), np.float32)
        return np.asarray(self.image_backbone.features(images), dtype=np.float32)

    def _features(self, x) -> np.ndarray:
        """A backbone run's head input: photos through the backbone, features as they are."""
        if isinstance(x, list | tuple) or np.asarray(x).dtype == np.uint8:
            return self.image_features(x)
        x = np.asarray(x, dtype=np.float32)
        dim = self.backbone["feature_dim"]
        if x.ndim != 2 or x.shape[1] != dim:
            raise RunError(
                f"{self.path}: expects photos or {self.backbone['name']} features of shape "
                f"(N, {dim}), got an array of shape {x.shape} (features of another backbone?); "
                f"compute them with `ivae features DATA --backbone {self.backbone['name']}`"
            )
        return x

    def _x_tensor(self, x) -> torch.Tensor:
        if self.backbone is not None:
            return torch.from_numpy(self._features(x))
        if isinstance(x, list | tuple):  # PIL images
            from ivae.images import image_to_array

            x = np.stack([image_to_array(img, self.image_size) for img in x])
        x = torch.as_tensor(np.asarray(x))
        if self.x_kind == "vector":
            return x.float()
        if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
            x = x.permute(0, 3, 1, 2)  # (N, S, S, 3) -> (N, 3, S, S)
        return x.contiguous()

    def _y_tensor(self, y) -> torch.Tensor:
        if self.y_kind == "text" and len(y) and isinstance(y[0], str):
            if self.vocab is None:
                raise RunError(f"{self.path}: no vocab.json; this run cannot read text queries")
            return torch.from_numpy(self.vocab.encode(list(y), max_len=self._max_len()))
        y = torch.as_tensor(np.asarray(y))
        return y.long() if self.y_kind == "text" else y.float()

    def encode_x(self, x, batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """Images (uint8 (N,3,S,S) or (N,S,S,3), or a list of PIL images) or vectors ->
        (N, k) factor values."""
        label = "images" if progress else None
        (z,) = encode_batched(self.model, "x", self._x_tensor(x), batch_size, progress=label)
        return z * self.signs

    def encode_y(
        self, y, batch_size: int = 256, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Recipe texts (list of str), token ids or vectors -> mean, logvar (N, k) of p(z|y)."""
        label = "recipes" if progress else None
        mean, logvar = encode_batched(
            self.model, "y", self._y_tensor(y), batch_size, progress=label
        )
        return mean * self.signs, logvar

    @torch.no_grad()
    def score(self, z: np.ndarray, mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        """(N, k) image codes vs (M, k) query Gaussians -> (N, M), higher = better match."""
        t = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (z, mean, logvar)]
        return self.model.score(*t).numpy()


def _factor_entries(path: Path, latent_dim: int) -> dict[int, dict]:
    """factors.json's entries by index, each checked (docs/design.md); RunError naming the
    file and what is wrong, so one hand-edited file never takes a page down."""
    notes = _read_json(path, {}) or {}
    fix = "fix or delete the file (the factors are then named 'factor 1', ...)"
    entries = notes.get("factors", []) if isinstance(notes, dict) else None
    if not isinstance(entries, list):
        raise RunError(f'{path}: expected {{"factors": [...]}}; {fix}')
    by_index = {}
    for number, entry in enumerate(entries):
        index = entry.get("index") if isinstance(entry, dict) else None
        valid = (
            isinstance(index, int)
            and 0 <= index < latent_dim
            and isinstance(entry.get("name", ""), str)
            and isinstance(entry.get("notes", ""), str)
            and entry.get("sign", 1) in (1, -1)
        )
        if not valid:
            raise RunError(
                f"{path}: entry {number} is not {{index: 0..{latent_dim - 1}, name: str, "
                f"notes: str, sign: 1 or -1}} (got {str(entry)[:80]}); {fix}"
            )
        by_index[index] = entry
    return by_index


def name_from_truth(run: Run, data: Dataset, split: str = "test") -> dict:
    """Name and orient each factor after the true factor it matches (synthetic data only):
    the Hungarian matching of the MCC, and a sign so that the code rises with its factor.
    Writes factors.json (notes kept) and returns it; rebuild the index afterwards."""
    from ivae.metrics import mcc

    part = data.part(split)
    if part.factors is None:
        raise RunError(f"{data.source}: no ground-truth factors to name the run's factors after")
    result = mcc(part.factors, run.encode_x(part.x))
    notes = run.factor_notes()
    for row, column in enumerate(result["matching"]):
        if column < 0:
            continue
        corr = result["correlation"][row, column]
        entry = notes["factors"][column]
        entry["name"] = part.factor_names[row]
        entry["sign"] = int(entry.get("sign", 1) * (1 if corr >= 0 else -1))
        entry["notes"] = entry["notes"] or (
            f"Matched to the generator's {part.factor_names[row]} "
            f"(|corr| {abs(corr):.2f} on the {split} split)."
        )
    matched = {int(c) for c in result["matching"] if c >= 0}
    for column, entry in enumerate(notes["factors"]):
        if column in matched or entry["notes"]:
            continue
        strongest = int(np.argmax(np.abs(result["correlation"][:, column])))
        entry["notes"] = (
            "Not matched to any of the generator's factors (a latent beyond them); its largest "
            f"|corr| with one is {abs(result['correlation'][strongest, column]):.2f} "
            f"({part.factor_names[strongest]}, {split} split)."
        )
    run.save_factor_notes(notes)
    run.__dict__.pop("signs", None)  # the cached orientation changed
    return notes


def load_run(path: str | Path) -> Run:
    """Load a finished run (``model.pt``, read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(
            f"{path}: no such run directory; train one with "
            f"`ivae train --data DATA --model implicit-ivae --out {path}`"
        )
    checkpoint = path / "model.pt"
    if not checkpoint.exists():
        hint = (
            "training was interrupted: continue it with `ivae train ... --resume`"
            if (path / "last.pt").exists()
            else "it holds no trained model"
        )
        raise RunError(f"{path}: no model.pt — {hint}")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        config = state["config"]
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
        raise RunError(f"{checkpoint}: unreadable checkpoint ({exc}); retrain the run") from exc
    if config.get("version") != CONFIG_VERSION:
        raise RunError(
            f"{checkpoint}: made by an incompatible version "
            f"({config.get('version')} != {CONFIG_VERSION}); retrain the run"
        )
    try:
        x, y = (Modality.from_json(config["data"][k]) for k in ("x", "y"))
        model = build_model(config["model"], config["model_config"], x, y, saved=True)
        model.load_state_dict(state["state_dict"])
    except (UnknownModel, KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first if len(first) <= 160 else first[:157] + "..."  # torch lists every tensor
        raise RunError(
            f"{checkpoint}: does not match this version's models ({first}); retrain the run"
        ) from exc
    model.eval()
    run = Run(path, config, model)
    run.factor_notes()  # factors.json checked now (RunError), not in the middle of a command
    return run
