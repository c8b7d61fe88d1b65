"""What a training step costs on this CPU for the image encoders on the photos: the shipped
run's CNN against the whole of EfficientNet-Lite0 fine-tuned with the head
(``--set encoder=efficientnet-lite0``), at the photo sizes each would read. One step (loss,
backward, Adam) of implicit-ivae on a kitchen-sized batch (128 photos, recipes as token ids),
the encoders interleaved so that the shared machine's load falls on both alike; prints the
median seconds per step and a kitchen epoch's minutes (20,000 items, 16,000 in training),
and writes them into docs/experiments.md between the ``finetune-steps`` markers.

    .venv/bin/python -m bench.finetune_steps
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from bench.common import EXPERIMENTS, command, load_average, write_section
from ivae.models import build_model
from ivae.nets import Modality
from ivae.train import TrainConfig, optimizer

ENCODERS = {
    "CNN (the shipped run's)": "network",
    "EfficientNet-Lite0, every layer": "efficientnet-lite0",
}
TRAIN_ITEMS = 16000  # kitchen's train split


def setup(encoder: str, size: int, batch_size: int):
    torch.manual_seed(0)
    x = Modality("image", (3, size, size))
    y = Modality("text", (64,), vocab_size=2000)
    options = {"latent_dim": 8, "hidden": 128, "likelihood_weight": 0.0, "encoder": encoder}
    model = build_model("implicit-ivae", options, x, y)
    batch = {
        "x": torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8),
        "y": torch.randint(1, 2000, (batch_size, 64)),
    }
    return model, optimizer(model, TrainConfig(lr=2e-3)), batch


def step(model, adam, batch) -> None:
    loss = model.loss(batch)["loss"]
    adam.zero_grad()
    loss.backward()
    adam.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    setups = {
        (label, size): setup(encoder, size, args.batch_size)
        for size in args.sizes
        for label, encoder in ENCODERS.items()
    }
    for model, adam, batch in setups.values():
        step(model, adam, batch)  # first-call allocations out of the timing
    times: dict = {key: [] for key in setups}
    for _ in range(args.rounds):
        for key, (model, adam, batch) in setups.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, adam, batch)
            times[key].append((time.perf_counter() - start) / args.steps)
    lines = [
        "| encoder | photos | s per step (median) | relative | a kitchen epoch |",
        "|---|---|---|---|---|",
    ]
    steps_per_epoch = -(-TRAIN_ITEMS // args.batch_size)
    for (label, size), values in times.items():
        median = statistics.median(values)
        cnn = statistics.median(times[next(iter(ENCODERS)), size])
        lines.append(
            f"| {label} | {size} px | {median:.2f} | {median / cnn:.1f} | "
            f"{median * steps_per_epoch / 60:.1f} min |"
        )
    body = (
        "\n".join(lines)
        + f"\n\nRegenerate: `{command('bench.finetune_steps')}` (batch {args.batch_size}; "
        f"{args.rounds} interleaved rounds of {args.steps} steps, 1 thread of the shared "
        f"2-core `{platform.processor() or platform.machine()}` machine, load average "
        f"{load_average():.1f} at the end; an epoch is {steps_per_epoch} steps)."
    )
    print(body)
    write_section("finetune-steps", body, EXPERIMENTS)


if __name__ == "__main__":
    main()
