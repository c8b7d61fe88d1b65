"""How precisely can any image encoder read the kitchen factors from the photos? The shipped
run's convolutional encoder, trained *supervised* to regress the true factors from the pixels
(mean squared error on the standardised factors, flips and quarter turns, the shipped
schedule), read on the test split: the correlation of each prediction with its factor.

It uses the true factors, so it is a ceiling for the encoders the model trains without them,
not a result of the model; set beside the oracle's MCC at a given precision
(``bench/kitchen_oracle.py --precision``), it says what MCC the photos themselves allow.
Writes the ``pixel-ceiling`` section of docs/experiments.md.

    .venv/bin/python -m bench.pixel_ceiling   # 30 epochs at 64 px, ~13 min on 1 core

``--encoder efficientnet-lite0`` trains the whole pretrained network with an MLP head instead
(from its ImageNet weights, the network at a tenth of the learning rate: the encoder
``--set encoder=efficientnet-lite0`` fine-tunes), and ``--train-items N`` the first N train
photos alone: on this CPU an epoch of the network costs about 16 times the CNN's.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from bench.common import EXPERIMENTS, command, load_average, read_section, shown, write_section
from ivae.data import load_dataset
from ivae.metrics import correlation_matrix
from ivae.nets import ConvEncoder
from ivae.train import dihedral

BATCH, LR, HIDDEN = 128, 2e-3, 128  # the kitchen preset's batch, learning rate and head width


def held_out_correlations(net, x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Each factor's correlation with its prediction on ``x``."""
    net.eval()
    with torch.no_grad():
        predicted = torch.cat(
            [net(torch.from_numpy(np.asarray(x[i : i + 512]))) for i in range(0, len(x), 512)]
        ).numpy()
    net.train()
    return np.diag(correlation_matrix(factors, predicted))


ENCODERS = ("cnn", "efficientnet-lite0")


def network(encoder: str, size: int, outputs: int) -> tuple[torch.nn.Module, list[dict]]:
    """The encoder to train and its optimiser's parameter groups."""
    if encoder == "cnn":
        net = ConvEncoder(size, outputs, hidden=HIDDEN)
        return net, [{"params": net.parameters(), "lr": LR}]
    from ivae.head import pretrained_network
    from ivae.models.implicit_ivae import ImplicitIVAEConfig
    from ivae.nets import Modality, pretrained_image_encoder

    net = pretrained_image_encoder(Modality("image", (3, size, size)), outputs, HIDDEN)
    pretrained_network(net)  # the ImageNet weights, as a run of the encoder starts
    return net, [
        {"params": net[0].parameters(), "lr": LR * ImplicitIVAEConfig.pretrained_lr_ratio},
        {"params": net[1].parameters(), "lr": LR},
    ]


def fit(data, epochs: int, seed: int, encoder: str = "cnn", items: int = 0) -> list[np.ndarray]:
    """Each epoch's test correlations of a supervised run (on the first ``items`` train
    photos, or all of them)."""
    train = np.flatnonzero(data.split == "train")
    train = train[:items] if items else train
    test = np.flatnonzero(data.split == "test")
    centre, scale = data.factors[train].mean(0), data.factors[train].std(0)
    target = torch.from_numpy(((data.factors - centre) / scale).astype(np.float32))
    x_test = np.asarray(data.x[test])
    torch.manual_seed(seed)
    net, groups = network(encoder, data.x.shape[-1], data.factors.shape[1])
    optimiser = torch.optim.Adam(groups, LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, epochs * math.ceil(len(train) / BATCH)
    )
    generator = torch.Generator().manual_seed(seed)
    rng, history = np.random.default_rng(seed), []
    for epoch in range(epochs):
        order = rng.permutation(train)
        for start in range(0, len(order), BATCH):
            rows = np.sort(order[start : start + BATCH])
            images = dihedral(torch.from_numpy(np.asarray(data.x[rows])), generator)
            loss = (net(images) - target[rows]).pow(2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        history.append(held_out_correlations(net, x_test, data.factors[test]))
        cells = " ".join(f"{r:.4f}" for r in history[-1])
        print(f"seed {seed} epoch {epoch + 1}: {cells} (mean {history[-1].mean():.4f})")
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/kitchen")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=64, help="the shipped run's 64 px")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoder", choices=ENCODERS, default="cnn")
    parser.add_argument("--train-items", type=int, default=0, help="the first N (0: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data, image_size=args.image_size)
    start = time.perf_counter()
    finals = [
        fit(data, args.epochs, seed, args.encoder, args.train_items)[-1]
        for seed in range(args.seeds)
    ]
    minutes = (time.perf_counter() - start) / 60 / args.seeds
    mean = np.mean(finals, axis=0)
    argv = ["--epochs", str(args.epochs), "--image-size", str(args.image_size)]
    argv += ["--seeds", str(args.seeds)] if args.seeds != 1 else []
    argv += ["--encoder", args.encoder] if args.encoder != "cnn" else []
    argv += ["--train-items", str(args.train_items)] if args.train_items else []
    what = (" EfficientNet-Lite0 fine-tuned," if args.encoder != "cnn" else "") + (
        f" {args.train_items} train photos," if args.train_items else ""
    )
    label = f"| {args.image_size} px,{what} {args.epochs} epochs |"
    row = (
        f"{label} {' | '.join(f'{r:.3f}' for r in mean)} | {mean.mean():.3f} | {args.seeds} | "
        f"{minutes:.1f} min on {args.threads} thread(s), load {load_average():.1f} | "
        f"`{command('bench.pixel_ceiling', argv)}` |"
    )
    earlier = [  # the other settings' rows, as earlier runs of this command wrote them
        line
        for line in read_section("pixel-ceiling", EXPERIMENTS).splitlines()
        if line.startswith("| ") and " px, " in line and not line.startswith(label)
    ]
    body = "\n".join(
        [
            f"{shown(args.data)}, test split: the shipped run's encoder (or, where the row says "
            "so, the whole pretrained EfficientNet-Lite0) trained on the true factors (the "
            "correlation of each prediction with its factor).",
            "",
            "| photos, schedule | " + " | ".join(data.factor_names) + " | mean | seeds | time "
            "a run | command |",
            "|---|" + "---|" * (len(data.factor_names) + 4),
            *sorted([*earlier, row], key=lambda line: int(line.split(" px")[0][2:])),
        ]
    )
    print(write_section("pixel-ceiling", body, EXPERIMENTS))


if __name__ == "__main__":
    main()
