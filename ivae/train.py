"""The training loop. Nothing here knows which model it trains: models return named terms.

A run directory (docs/design.md) holds ``config.json``, ``last.pt`` (everything needed to resume,
written atomically at least every ``checkpoint_seconds`` and at each epoch end),
``history.csv`` (one row per epoch: every named term, train and validation), ``model.pt`` and
``metrics.json`` once training finishes.
"""

from __future__ import annotations

import copy
import json
import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ivae import distributed
from ivae.alignment import LR as ALIGN_LR
from ivae.alignment import AlignmentUnsupported, align, output_layers
from ivae.checkpoint import CONFIG_VERSION
from ivae.data.dataset import Dataset
from ivae.data.paired import SKIPPED
from ivae.encoding import encode_batched
from ivae.evaluate import encode, evaluate, leakage
from ivae.head import pretrained_network, pretrained_tail
from ivae.health import assess
from ivae.io import LockedError, remove_stale, run_lock, save_torch, write_json, write_text
from ivae.loader import EpochBatches, TrainRows, epoch_seed, train_loader
from ivae.metrics import mcc
from ivae.models.base import Model, build_model, model_class
from ivae.nets import DIHEDRAL_VIEWS, Modality, dihedral_view

AUGMENTATIONS = ("none", "dihedral")
# The training options ``--resume --allow-changes`` may change: the schedule's length and
# its rate. The model, its options, the batch size, the seed and the restarts shape what the
# checkpoint holds or how its epochs are cut, so a run cannot continue under others.
RESUME_CHANGES = ("epochs", "lr")


def dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, C, S, S) -> each image under one of the 8 symmetries of the square, drawn apart."""
    ops = torch.randint(0, DIHEDRAL_VIEWS, (len(images),), generator=generator)
    ops = ops.to(images.device)
    out = images.clone()
    for op in range(1, DIHEDRAL_VIEWS):
        chosen = ops == op
        if chosen.any():
            out[chosen] = dihedral_view(images[chosen], op)
    return out


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


class Diverged(TrainingError):
    """Training blew up: the run rolls back to its last good epoch, or the start is dropped."""


class NonFiniteLoss(Diverged):
    """A training step's loss went NaN or infinite."""


# A run that blows up after its start is chosen goes back to its last good epoch and trains on
# at half the learning rate, at most this many times; then it stops with the error
# (docs/experiments.md, "How much of eq. 1 on square data").
ROLLBACKS = 3


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    final_lr_fraction: float = 0.1  # cosine decay from lr to this fraction of it
    checkpoint_seconds: float = 30.0
    # "dihedral": each training image is flipped and turned by a random multiple of 90
    # degrees, which moves no factor of a top-down photo (orientation is a nuisance)
    augment: str = "none"
    # Robust start (docs/method.md, "Training"): ``restarts`` initialisations each train
    # ``restart_epochs`` epochs; the one with the best validation objective (the model's
    # ``selection_score``) goes on, the others are dropped. 1: a single initialisation.
    restarts: int = 1
    restart_epochs: int = 2
    # The final alignment (ivae.alignment): after the epochs, this many steps of the density
    # ratio on a k x k map of the training codes and the prior's last layer (0: none)
    align_steps: int = 0

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 2,
            "lr": 0 < self.lr < 10,
            "device": self.device in ("auto", "cpu", "cuda"),
            "augment": self.augment in AUGMENTATIONS,
            "restarts": self.restarts >= 1,
            "restart_epochs": self.restart_epochs >= 1,
            "align_steps": self.align_steps >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training option(s) {bad}: {self}")

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        """A saved run's options; runs saved before restarts existed had one start."""
        d = {"restarts": 1, **d}
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    @property
    def candidate_epochs(self) -> int:
        """Epochs each initialisation trains before the choice (0: there is no choice)."""
        return min(self.restart_epochs, self.epochs) if self.restarts > 1 else 0


def candidate_seed(seed: int, candidate: int) -> int:
    """The initialisation seed of restart ``candidate``; candidate 0 is the run's own seed, so
    a run with one start is the run it always was."""
    return seed if candidate == 0 else (seed + 1) * 1_000_003 + candidate


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError(
            "--device cuda was asked for but no CUDA device is available; use --device auto or cpu"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def modalities(data: Dataset) -> tuple[Modality, Modality]:
    vocab = len(data.vocab) if data.vocab is not None else 0
    return (
        Modality(data.x_kind, tuple(data.x.shape[1:])),
        Modality(data.y_kind, tuple(data.y.shape[1:]), vocab),
    )


def run_config(
    data: Dataset,
    model: str,
    model_options: dict,
    train: TrainConfig,
    backbone: dict | None = None,
    preset: str | None = None,
) -> dict:
    """Everything needed to rebuild the model and reload its data (config.json). A backbone
    run also records its backbone (ivae.head.backbone_record): x is then its features. The
    preset (ivae/presets.py) the options started from is recorded, or null."""
    x, y = modalities(data)
    return {
        "version": CONFIG_VERSION,
        "preset": preset,
        **({"backbone": backbone} if backbone else {}),
        "model": model,
        "model_config": model_options,
        "train": asdict(train),
        "data": {
            "path": data.source,
            "name": data.name,
            "x": x.to_json(),
            "y": y.to_json(),
            "factor_names": list(data.factor_names),
            "n_items": len(data),
        },
    }


def optimizer(model: Model, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam, fused: one kernel for all parameters instead of ~10 ops per tensor. On the
    toy's small flow encoder that was a quarter of a step (bench/flow_steps.py). One group per
    ``model.parameter_groups()``, each at its ``lr_ratio`` of the learning rate."""
    groups = [{**group, "lr": cfg.lr * group["lr_ratio"]} for group in model.parameter_groups()]
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


START_ROWS = 16384  # training inputs a model's data-dependent start sees (Model.start_from)


def start_sample(x: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """Up to START_ROWS of the training inputs, evenly spaced over ``rows`` (data sets are
    often ordered, the toy's by segment)."""
    picked = rows[np.linspace(0, len(rows) - 1, min(len(rows), START_ROWS)).round().astype(int)]
    return torch.from_numpy(np.asarray(x[picked], dtype=np.float32))


class LossOf(torch.nn.Module):
    """``model.loss`` as a forward pass: what DistributedDataParallel wraps, so that the
    backward of every step all-reduces the gradients (torchrun, ivae.distributed)."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        return self.model.loss(batch)


def host_copy(value):
    """``value`` with every tensor in it copied to the CPU (a deep copy of the rest)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: host_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(host_copy(item) for item in value)
    return copy.deepcopy(value)


class Trainer:
    def __init__(
        self,
        data: Dataset,
        out: Path,
        config: dict,
        progress: bool = True,
        views: np.ndarray | None = None,
        workers: int = 0,
        world: distributed.World = distributed.ALONE,
    ):
        self.out, self.config, self.world = out, config, world
        self.progress, self.workers = progress and world.main, workers
        self.train_cfg = TrainConfig.from_json(config["train"])
        self.device = distributed.device_of(resolve_device(self.train_cfg.device), world)
        train_rows = np.flatnonzero(data.split == "train")
        if len(train_rows) < 2:
            raise TrainingError(f"{data.source}: the train split has {len(train_rows)} items")
        # what a model that starts from the data sees (read once, the same in every process)
        self.start_rows, self.start_x = train_rows, data.x
        self.start_inputs: torch.Tensor | None = None
        self.build(self.train_cfg.seed)
        self.config["model_config"] = self.model.config.to_json()  # defaults filled in
        if self.train_cfg.align_steps:  # refused before any training, not after it
            try:
                output_layers(self.model)
            except AlignmentUnsupported as error:
                raise TrainingError(f"--align-steps: {error}; train without it") from None
        # The train split stays in the data set's arrays (memory-mapped or not): the loader
        # reads a batch at a time (ivae.loader). Backbone runs: ``views`` (N, V, F) float16
        # features of the V flips and quarter turns of every photo (x is view 0); augment
        # "dihedral" draws one view per item.
        self.val_data = data.part("val")
        dihedral_views = views if self.train_cfg.augment == "dihedral" else None
        self.rows = TrainRows(
            data.x, data.y, train_rows, dihedral_views, self.train_cfg.seed, world
        )
        self.batch = min(self.train_cfg.batch_size, len(train_rows))
        self.steps_per_epoch = len(train_rows) // self.batch
        self.epoch, self.step, self.history = 0, 0, []
        self.elapsed = 0.0
        # The running sums of this epoch's training terms, saved with every checkpoint: the
        # history row of an epoch resumed in its middle averages all of its steps.
        self.sums: dict[str, float] = {}
        # The restarts (choose_start): the initialisations scored so far, the one in
        # training, the best so far as (score, candidate, snapshot), and whether the choice
        # is still being made.
        self.restarts: list[dict] = []
        self.candidate, self.kept, self.choosing = 0, None, False
        # Roll-backs (roll_back): the state to go back to and each roll-back made.
        self.good: dict | None = None
        self.rollbacks: list[dict] = []

    def build(self, seed: int) -> None:
        """A freshly initialised model (from ``seed``), its optimizer and its step module."""
        torch.manual_seed(seed)
        x, y = (Modality.from_json(self.config["data"][k]) for k in ("x", "y"))
        model = build_model(self.config["model"], self.config["model_config"], x, y)
        if model.starts_from_data:  # a resumed run's checkpoint then replaces the start
            if self.start_inputs is None:
                self.start_inputs = start_sample(self.start_x, self.start_rows)
            model.start_from(self.start_inputs)
        pretrained_tail(model, self.config.get("backbone"))  # a fine-tuned backbone block
        pretrained = pretrained_network(model)  # a whole pretrained network on the photos
        if pretrained:  # a resumed run keeps the record of the weights it started from
            self.config.setdefault("pretrained", pretrained)
        self.model: Model = model.to(self.device)
        self.last_codes: np.ndarray | None = None  # the previous epoch's validation codes
        self.optimizer = optimizer(self.model, self.train_cfg)
        self.step_module: torch.nn.Module = LossOf(self.model)
        if self.world.size > 1:  # every process builds the same model; DDP checks it
            self.step_module = torch.nn.parallel.DistributedDataParallel(
                self.step_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )

    # ---- checkpoints -------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "config": self.config,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "elapsed": self.elapsed,
            "rng": torch.get_rng_state(),
            "sums": dict(self.sums),
            # the last validation codes: val_code_change of the next epoch compares with them
            "codes": None if self.last_codes is None else torch.from_numpy(self.last_codes),
            "restarts": self.restarts,
            "candidate": self.candidate,
            "kept": self.kept,
            "choosing": self.choosing,
            "rollbacks": self.rollbacks,
        }

    def restore(self, path: Path) -> None:
        state = load_checkpoint(path, self.device)
        self.model.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:  # e.g. one tensor per coupling then, stacked now
            raise TrainingError(
                f"{path} holds optimizer state for another set of parameter tensors ({error}): "
                "it was written by an earlier layout of this model. Its weights still load, "
                "but training cannot go on from it; train anew with another --out."
            ) from None
        self.epoch, self.step = state["epoch"], state["step"]
        self.history, self.elapsed = state["history"], state["elapsed"]
        self.restarts = state.get("restarts", [])
        self.candidate, self.kept = state.get("candidate", 0), state.get("kept")
        self.choosing = state.get("choosing", False)
        self.rollbacks = state.get("rollbacks", [])
        self.sums = dict(state.get("sums", {}))
        codes = state.get("codes")
        self.last_codes = None if codes is None else codes.cpu().numpy()
        torch.set_rng_state(state["rng"].cpu())

    def checkpoint(self) -> None:
        if self.world.main:  # rank 0 alone writes the run directory
            save_torch(self.out / "last.pt", self.state())

    # ---- one epoch ---------------------------------------------------------------------
    @property
    def lr_scale(self) -> float:
        """Half the learning rate for every roll-back made at it: a rate changed on --resume
        (--allow-changes) starts at its own scale, with its own ROLLBACKS."""
        return 0.5**self.rollbacks_at_lr

    @property
    def rollbacks_at_lr(self) -> int:
        """The roll-backs made at the run's present --lr."""
        return sum(r["lr"] == self.train_cfg.lr for r in self.rollbacks)

    @property
    def val_batch(self) -> int:
        """B of the validation batches (val_terms): the density ratio's log B."""
        return min(len(self.val_data), 2048, self.batch)

    def lr_at(self, epoch: int, step: int) -> float:
        cfg = self.train_cfg
        progress = (epoch + step / self.steps_per_epoch) / cfg.epochs
        floor = cfg.final_lr_fraction
        cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.lr * self.lr_scale * cosine

    def batches(self, epoch: int):
        # The order depends on (seed, epoch) alone, so a resumed epoch replays it exactly.
        sampler = EpochBatches(
            len(self.rows), self.batch, self.train_cfg.seed, epoch, self.step, self.world
        )
        pin = self.device.type == "cuda"
        augment = self.train_cfg.augment == "dihedral" and self.rows.views is None
        loader = iter(train_loader(self.rows, sampler, self.workers, pin_memory=pin))
        try:
            for step, batch in zip(range(self.step, sampler.steps), loader, strict=True):
                x = batch["x"].to(self.device, non_blocking=pin)
                if augment:  # seeded by (seed, epoch, step): a resumed step replays it
                    x = self.augmented(x, epoch_seed(self.train_cfg.seed, epoch) * 7919 + step)
                yield step, {"x": x, "y": batch["y"].to(self.device, non_blocking=pin)}
        finally:
            # Stop the workers now, not when the traceback lets go of the iterator: it takes
            # their pids off the DataLoader's SIGCHLD watch, whose handler would otherwise
            # raise again, anywhere, once a dead worker's signal is handled late.
            shutdown = getattr(loader, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def augmented(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """Each image under one of the 8 symmetries of the square, drawn apart (backbone runs
        draw one cached view per item in the loader instead). Under torchrun the draws are
        each process's own."""
        if self.world.size > 1:
            seed = seed * 1_000_003 + self.world.rank
        generator = torch.Generator().manual_seed(seed)
        return dihedral(x, generator) if x.dim() == 4 else x

    def train_step(self, batch: dict) -> dict[str, float]:
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        with autocast, distributed.spanning():
            terms = self.step_module(batch)
        values = {k: float(v.detach()) for k, v in terms.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if distributed.any_process(bool(bad)):  # every process stops, none waits on the others
            raise NonFiniteLoss(
                f"non-finite loss at epoch {self.epoch + 1}, step {self.step + 1}: "
                + ", ".join(f"{k} = {values[k]}" for k in bad)
            )
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.train_cfg.grad_clip, foreach=True
        )
        self.optimizer.step()
        return values

    def run_epoch(self) -> dict[str, float]:
        sums = self.sums  # carried over from the checkpoint when the epoch is resumed
        self.model.progress = self.epoch / self.train_cfg.epochs  # a schedule's terms follow it
        last_save = time.monotonic()
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.step,
            disable=not self.progress,
            desc=f"epoch {self.epoch + 1}/{self.train_cfg.epochs}",
            leave=False,
        )
        for step, batch in self.batches(self.epoch):
            lr = self.lr_at(self.epoch, step)
            for group in self.optimizer.param_groups:  # a group saved without a ratio: 1
                group["lr"] = lr * group.get("lr_ratio", 1.0)
            start = time.monotonic()
            values = self.train_step(batch)
            self.elapsed += time.monotonic() - start
            self.step = step + 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.3f}")
            if time.monotonic() - last_save > self.train_cfg.checkpoint_seconds:
                self.checkpoint()
                last_save = time.monotonic()
        bar.close()
        count = max(1, self.steps_per_epoch)
        self.sums = {}
        return distributed.mean_over_processes({f"train_{k}": v / count for k, v in sums.items()})

    def val_terms(self, part: Dataset) -> dict[str, float]:
        """Every named term of the objective on (the first 2048 items of) ``part``, in
        batches of the training batch size: ``{"val_<term>": mean}``."""
        self.model.eval()
        n = min(len(part), 2048)
        batch = {
            "x": torch.from_numpy(np.asarray(part.x[:n])).to(self.device),
            "y": torch.from_numpy(np.asarray(part.y[:n])).to(self.device),
        }
        terms: dict[str, list[float]] = {}  # with gradients: a Jacobian term needs them
        for start in range(0, n, self.batch):
            piece = {k: v[start : start + self.batch] for k, v in batch.items()}
            if len(piece["x"]) < 2:
                continue
            for k, v in self.model.loss(piece).items():
                terms.setdefault(f"val_{k}", []).append(float(v.detach()))
        self.model.train()
        return {k: float(np.mean(v)) for k, v in terms.items()}

    def validate(self) -> dict[str, float]:
        """The validation row of history.csv: every term of the objective, the model's
        ``val_score``, ``val_code_change`` (ivae.health) and, with true factors, ``val_mcc``."""
        if len(self.val_data) < 2:
            return {}
        row = self.val_terms(self.val_data)
        terms = {k.removeprefix("val_"): v for k, v in row.items()}
        row["val_score"] = float(self.model.selection_score(terms))
        truth = self.val_data.factors
        z = self.val_codes(len(self.val_data) if truth is not None else 2048)
        codes = z[:2048]  # what val_code_change compares, epoch to epoch
        if self.last_codes is not None:
            row["val_code_change"] = 1.0 - mcc(self.last_codes, codes)["mcc"]
        self.last_codes = codes
        if truth is not None:
            row["val_mcc"] = mcc(truth, z)["mcc"]
        return row

    def val_codes(self, n: int) -> np.ndarray:
        """The image codes of the first ``n`` validation items, encoded once per epoch."""
        self.model.eval()
        (z,) = encode_batched(self.model, "x", self.val_data.x[:n], 512, self.device)
        self.model.train()
        return z

    # ---- the whole run -----------------------------------------------------------------
    def fit(self) -> None:
        self.model.train()
        fresh = self.epoch == 0 and self.step == 0 and not self.restarts
        if self.choosing or (fresh and self.train_cfg.candidate_epochs):
            self.choose_start()
        self.good = self.snapshot()
        while self.epoch < self.train_cfg.epochs:
            try:
                self.train_epoch()
            except Diverged as error:
                self.roll_back(error)
                continue
            self.good = self.snapshot()

    def train_epoch(self) -> None:
        row = {"epoch": self.epoch + 1, **self.run_epoch()}
        row.update(self.validate() if self.world.main else {})
        row["seconds"] = round(self.elapsed, 2)
        blown = self.blown_up(row) if self.world.main else None
        if not self.choosing and distributed.any_process(blown is not None):
            why = blown or "found by rank 0's validation"
            raise Diverged(f"the run blew up in epoch {self.epoch + 1} ({why})")
        self.history.append(row)
        self.epoch, self.step = self.epoch + 1, 0
        self.checkpoint()
        if self.world.main and not self.choosing:
            write_text(self.out / "history.csv", pd.DataFrame(self.history).to_csv(index=False))
        distributed.barrier()  # the others wait while rank 0 validates and writes
        if self.progress:
            shown = {k: round(v, 4) for k, v in row.items() if k in ("train_loss", "val_mcc")}
            tqdm.write(f"epoch {row['epoch']}: {shown}")

    def blown_up(self, row: dict) -> str | None:
        """Why the epoch just trained has blown up, or None. A density ratio (the
        implicit-ivae objective) is 0 for codes that say nothing of their query and at most
        log B; below -log B the codes point away from it, which no training step that works
        does (measured: a square-toy run went from 0.25 to -2e28 in one epoch at lr 1e-2)."""
        ratio = row.get("val_ratio", row.get("train_ratio"))
        if ratio is None:
            return None
        batch = self.val_batch if "val_ratio" in row else self.batch
        floor = -math.log(batch)
        if not math.isfinite(ratio) or ratio < floor:
            return f"density ratio {ratio:.3g}, below {floor:.3g} = -log B"
        return None

    def roll_back(self, error: Diverged) -> None:
        """Go back to the last good epoch (weights, optimizer, history, random state) and
        train on from it at half the learning rate; after ROLLBACKS of them, stop with
        ``error``. Every process rolls back together (their states are the same)."""
        made = self.rollbacks_at_lr
        if self.good is None or made >= ROLLBACKS:
            tried = f" (after {made} roll-backs)" if made else ""
            raise type(error)(f"{error}{tried}. {self.advice()}") from None
        reason = str(error).split(". ")[0]
        self.rollbacks.append(
            {
                "epoch": self.epoch + 1,
                "reason": reason,
                "to_epoch": self.good["epoch"],
                "lr": self.train_cfg.lr,
                "lr_scale": self.lr_scale / 2,
            }
        )
        self.load(self.good)
        if self.progress:
            tqdm.write(
                f"{reason}: back to epoch {self.epoch}, step {self.step}, "
                f"learning rate x{self.lr_scale:g}"
            )
        if (self.out / "last.pt").exists():  # it may hold a step of the blow-up
            self.checkpoint()

    def advice(self) -> str:
        """What to do when training stops for good on a blow-up."""
        last = self.out / "last.pt"
        if last.exists():
            return (
                f"The last good checkpoint {last} is intact; lower --lr and continue with "
                "--resume --allow-changes, or start a new --out"
            )
        return "No checkpoint was written yet; start again with a lower --lr"

    def choose_start(self) -> None:
        """Train ``restarts`` initialisations for ``candidate_epochs`` each and go on with the
        one whose validation objective is best (``Model.selection_score``, known without the
        true factors). Every process trains the same candidates and makes the same choice.
        Checkpoints inside the choice hold the best candidate so far, so --resume continues
        it at the candidate and step where it stopped."""
        cfg = self.train_cfg
        self.choosing = True
        while True:
            try:
                while self.epoch < cfg.candidate_epochs:
                    self.train_epoch()
                self.score_candidate()
            except NonFiniteLoss as error:  # a start that diverges is dropped, not the run
                if self.candidate + 1 == cfg.restarts and self.kept is None:
                    raise NonFiniteLoss(f"{error}. {self.advice()}") from None
                self.drop_candidate(error)
            if self.candidate + 1 == cfg.restarts:
                break
            self.candidate += 1
            self.build(candidate_seed(cfg.seed, self.candidate))  # a new module trains
            self.epoch, self.step, self.history, self.sums = 0, 0, [], {}
            self.checkpoint()
        _, best, kept = self.kept
        for tried in self.restarts:
            tried["chosen"] = tried["candidate"] == best
        self.load(kept)  # the candidates share one architecture
        self.choosing, self.kept = False, None
        self.checkpoint()
        if self.world.main:
            write_text(self.out / "history.csv", pd.DataFrame(self.history).to_csv(index=False))

    def drop_candidate(self, error: NonFiniteLoss) -> None:
        """Record the candidate in training as diverged (no score); the next one starts."""
        seed = candidate_seed(self.train_cfg.seed, self.candidate)
        reason = str(error).split(". ")[0]
        self.restarts.append(
            {"candidate": self.candidate, "seed": seed, "score": None, "diverged": reason}
        )
        if self.progress:
            tqdm.write(f"start {self.candidate + 1}/{self.train_cfg.restarts}: {reason}; dropped")

    def score_candidate(self) -> None:
        """Score the candidate just trained and keep a copy of it if it is the best so far."""
        score = distributed.mean_over_processes({"s": self.selection_score()})["s"]
        seed = candidate_seed(self.train_cfg.seed, self.candidate)
        validation = {
            k: v for k, v in self.history[-1].items() if k.startswith("val_") and k != "val_score"
        }
        self.restarts.append(
            {"candidate": self.candidate, "seed": seed, "score": score, **validation}
        )
        if self.progress:
            tqdm.write(
                f"start {self.candidate + 1}/{self.train_cfg.restarts}: "
                f"validation score {score:.4f}"
            )
        if self.kept is None or score > self.kept[0]:
            self.kept = (score, self.candidate, self.snapshot())

    def snapshot(self) -> dict:
        """A copy of the model in training (weights, optimizer, history, position, RNG), in
        host memory: a start kept by the choice, or the last good epoch of a roll-back. On a
        GPU the copy would take as much of its memory again as the weights and Adam's moments
        (``load`` puts the tensors back on the training device)."""
        return {
            "model": host_copy(self.model.state_dict()),
            "optimizer": host_copy(self.optimizer.state_dict()),
            "history": list(self.history),
            "epoch": self.epoch,
            "step": self.step,
            "sums": dict(self.sums),
            "rng": torch.get_rng_state(),
            "codes": torch.from_numpy(self.last_codes) if self.last_codes is not None else None,
        }

    def load(self, snapshot: dict) -> None:
        """Put a ``snapshot`` back; the run goes on from its epoch and step."""
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.history = list(snapshot["history"])
        # a start kept in a checkpoint written before snapshots held their position ended
        # its last epoch
        self.epoch = snapshot.get("epoch", len(self.history))
        self.step = snapshot.get("step", 0)
        self.sums = dict(snapshot.get("sums", {}))  # the epoch's running sums up to its step
        torch.set_rng_state(snapshot["rng"].cpu())
        codes = snapshot.get("codes")  # its last codes: val_code_change goes on from them
        self.last_codes = codes.cpu().numpy() if codes is not None else None

    def selection_score(self) -> float:
        """The model's score of the validation objective (higher is better), on every
        process; the training objective's on the train split without a validation split."""
        if len(self.val_data) >= 2:
            found, prefix = self.val_terms(self.val_data), "val_"
        else:
            found, prefix = self.history[-1], "train_"
        terms = {k.removeprefix(prefix): v for k, v in found.items() if k.startswith(prefix)}
        return float(self.model.selection_score(terms))

    def align(self, data: Dataset) -> dict:
        """The final alignment (ivae.alignment), folded into the model; its report."""
        cfg = self.train_cfg
        if self.progress:
            tqdm.write(f"final alignment: {cfg.align_steps} steps on the training codes")
        return align(self.model, data, cfg.align_steps, ALIGN_LR, self.batch, cfg.seed, self.device)

    def finish(self, data: Dataset) -> dict:
        """Rank 0 writes model.pt and metrics.json and returns the metrics; the others {}."""
        if not self.world.main:
            return {}
        self.model.eval()
        alignment = self.align(data) if self.train_cfg.align_steps else None
        save_torch(
            self.out / "model.pt", {"config": self.config, "state_dict": self.model.state_dict()}
        )
        split = "test" if (data.split == "test").any() else "all"
        metrics = evaluate(self.model, data, split=split, device=self.device)
        metrics["train_seconds"] = round(self.elapsed, 2)
        if self.device.type == "cuda":  # rank 0's peak, training and evaluation (bench/gpu_check)
            peak = torch.cuda.max_memory_allocated(self.device)
            metrics["peak_device_memory_mb"] = round(peak / 2**20, 1)
        metrics["restarts"] = self.restarts
        metrics["rollbacks"] = self.rollbacks
        if alignment is not None:
            metrics["alignment"] = alignment
        n_val = self.val_batch
        metrics["health"] = assess(self.history, math.log(n_val) if n_val > 1 else None)
        # photos that could not be decoded: in no split, left out of training (ivae.data.paired)
        metrics["skipped_images"] = int(np.sum(data.split == SKIPPED))
        part = data.part(split)  # beyond the evaluate schema: what the dashboard also shows
        metrics["nuisance_leakage"] = leakage(part, encode(self.model, part, device=self.device)[0])
        write_json(self.out / "metrics.json", metrics)
        return metrics


def train(
    data: Dataset,
    out: str | Path,
    model: str,
    model_options: dict | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    views: np.ndarray | None = None,
    backbone: dict | None = None,
    preset: str | None = None,
    workers: int = 0,
    rendezvous_timeout: float = 1800.0,
    changes: dict | None = None,
) -> dict:
    """Train ``model`` on ``data`` into the run directory ``out``; returns the test metrics.
    ``preset`` names the preset the options came from, for config.json alone.

    ``workers``: DataLoader worker processes reading the batches (0: read in this process).
    Under torchrun (ivae.distributed) every process calls this; rank 0 writes the run and
    returns the metrics, the others return {}. ``rendezvous_timeout``: seconds a process waits
    for the others (to start, and at every collective) before it stops with a message.
    ``changes``: training options (``RESUME_CHANGES``) that a resumed run takes over its own
    (``ivae train --resume --allow-changes``), recorded in config.json.

    Backbone runs (ivae.head): ``data.x`` holds the backbone's view-0 features, ``views``
    (N, V, F) those of every flip and quarter turn, ``backbone`` its record for config.json.
    """
    out = Path(out)
    last = out / "last.pt"
    # no metadata table: the validation and test splits would copy their rows of it
    data = replace(data, items=None)
    if resume:
        state_config = load_checkpoint(last)["config"]
        state_config["train"].update(changes or {})
        saved = model_class(state_config["model"]).Config.from_saved(state_config["model_config"])
        state_config["model_config"] = saved.to_json()  # options added since: as trained
        _check_same_data(data, state_config, out)
        world = _join(state_config["train"]["device"], rendezvous_timeout)
        trainer = Trainer(data, out, state_config, progress, views, workers, world)
    else:
        _refuse_existing(out)
        cfg = run_config(
            data, model, model_options or {}, config or TrainConfig(), backbone, preset
        )
        world = _join(cfg["train"]["device"], rendezvous_timeout)
        trainer = Trainer(data, out, cfg, progress, views, workers, world)
    try:
        with ExitStack() as hold:
            if world.main:  # one writer per run directory (docs/design.md, "Run directory")
                hold.enter_context(run_lock(out, "ivae train"))
            _start(trainer, data, out, resume, bool(changes))
            return _fit(trainer, data, workers, last)
    except LockedError as error:
        raise TrainingError(str(error)) from None
    finally:
        distributed.stop()


def _refuse_existing(out: Path) -> None:
    if (out / "last.pt").exists() or (out / "model.pt").exists():
        raise TrainingError(
            f"{out} already holds a run; continue it with --resume "
            "or choose another --out (nothing was changed)"
        )


def _start(trainer: Trainer, data: Dataset, out: Path, resume: bool, changed: bool) -> None:
    """Restore a resumed run (every process), or write a new run's config (rank 0), under the
    run's lock: a second writer is refused before it changes anything."""
    if resume:
        if trainer.world.main:
            remove_stale(out)  # temp files of a writer killed mid-write
        trainer.restore(out / "last.pt")
        if trainer.world.main and changed:
            write_json(out / "config.json", trainer.config)
        return
    if trainer.world.main:
        _refuse_existing(out)  # again, now that the lock is held
        write_json(out / "config.json", trainer.config)
        if data.vocab is not None:
            write_json(out / "vocab.json", data.vocab.to_json())


def _fit(trainer: Trainer, data: Dataset, workers: int, last: Path) -> dict:
    try:
        trainer.fit()
        return trainer.finish(data)
    except (RuntimeError, ConnectionError) as error:
        # A killed worker surfaces as the DataLoader's RuntimeError, or, when it dies while
        # handing a batch over in shared memory, as a ConnectionError from the fd sharer.
        loader = isinstance(error, ConnectionError) and workers > 0
        if isinstance(error, TrainingError) or not (loader or "DataLoader worker" in str(error)):
            raise
        raise TrainingError(
            f"a data-loading worker died ({str(error).splitlines()[0]}); {last} is intact: "
            "continue with --resume, with fewer --workers (or 0) if memory ran short"
        ) from None


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    """``last.pt`` (weights_only), or TrainingError in one line when it is missing or damaged."""
    if not path.exists():
        raise TrainingError(
            f"{path.parent}: nothing to resume (no last.pt); start without --resume"
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state["config"]["train"], dict):
            raise TypeError("its config holds no training options")
    except Exception as error:  # noqa: BLE001 - a damaged file raises many kinds; one answer
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise TrainingError(
            f"{path} is damaged and cannot be resumed ({reason}); train again into a new "
            "--out (the run was not changed)"
        ) from None
    return state


def _check_same_data(data: Dataset, config: dict, out: Path) -> None:
    """--resume on other data than the run's: refused in one line, the run unchanged."""
    found = run_config(data, config["model"], {}, TrainConfig())["data"]
    as_json = json.loads(json.dumps({k: found[k] for k in ("n_items", "x", "y")}))
    saved = json.loads(json.dumps({k: config["data"][k] for k in as_json}))
    differ = [f"{k} {saved[k]} (given {as_json[k]})" for k in as_json if as_json[k] != saved[k]]
    if differ:
        raise TrainingError(
            f"--resume: {out} was trained on other data than {data.source}: "
            + ", ".join(differ)
            + f"; resume with --data {config['data']['path']} (the run was not changed)"
        )


def _join(device: str, timeout: float) -> distributed.World:
    """This process's place under torchrun (a group of one without it)."""
    try:
        return distributed.start(resolve_device(device), timeout)
    except distributed.DistributedError as error:
        raise TrainingError(str(error)) from None


def resume_mismatch(saved: dict, model: str, options: dict, train_fields: dict) -> str | None:
    """Why the flags given to ``--resume`` describe another run than ``saved`` (its
    config.json), or None. Only what was given is compared; the rest comes from the run."""
    given = {"model": (saved["model"], model)}
    model_config = saved.get("model_config", {})
    given.update({k: (model_config.get(k), v) for k, v in options.items()})
    train_config = saved.get("train", {})
    given.update({k: (train_config.get(k), v) for k, v in train_fields.items()})
    differ = [f"{k} {was!r} (given {now!r})" for k, (was, now) in given.items() if was != now]
    if not differ:
        return None
    return "it was trained with " + ", ".join(differ)
