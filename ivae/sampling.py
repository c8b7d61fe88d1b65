"""How an epoch of training pairs is cut into batches.

The density ratio (docs/method.md, section 2) scores every image of a batch against every
recipe of it, so the other recipes of the batch are the negatives. Drawn at random, most of
them differ from the true recipe in kind (a soup against a salad), and telling those apart
needs only the coarse content of the codes. What tells a factor from a mixture of factors is
finer: how precisely each recipe fixes each factor, which matters only between recipes
that are alike. ``grouped`` batches are made of ``group`` items whose conditions fall in one
cluster (k-means on the recipes' bag of words, or on the condition vectors), so part of
every batch's negatives are such look-alikes, while the batch still spans several clusters.

Both orders depend on (seed, epoch) alone, so a resumed epoch replays its batches exactly.
"""

from __future__ import annotations

import numpy as np
import torch

BATCHINGS = ("random", "grouped")


def condition_features(y: np.ndarray, kind: str, vocab_size: int = 0) -> np.ndarray:
    """(N, D) float features of the conditions to cluster: tf-idf of a recipe's tokens (padding
    left out), unit length; or the condition vector, standardised."""
    if kind == "text":
        counts = np.zeros((len(y), vocab_size), np.float32)
        rows = np.repeat(np.arange(len(y)), y.shape[1])
        np.add.at(counts, (rows, y.reshape(-1)), 1.0)
        counts[:, 0] = 0.0
        idf = np.log(len(y) / (1.0 + (counts > 0).sum(0)))
        features = counts * idf
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    flat = y.reshape(len(y), -1).astype(np.float32)
    return (flat - flat.mean(0)) / np.maximum(flat.std(0), 1e-12)


def kmeans(features: np.ndarray, k: int, seed: int, iterations: int = 30) -> np.ndarray:
    """(N,) cluster labels in 0..k-1 by Lloyd's algorithm from a k-means++ start; seeded."""
    rng = np.random.default_rng(seed)
    k = min(k, len(features))
    centres = [features[rng.integers(len(features))]]
    nearest = ((features - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        chosen = rng.choice(len(features), p=nearest / nearest.sum()) if nearest.sum() > 0 \
            else rng.integers(len(features))
        centres.append(features[chosen])
        nearest = np.minimum(nearest, ((features - centres[-1]) ** 2).sum(1))
    centres = np.stack(centres)
    labels = np.full(len(features), -1)
    for _ in range(iterations):
        distances = (features ** 2).sum(1)[:, None] - 2 * features @ centres.T \
            + (centres ** 2).sum(1)[None]
        new = distances.argmin(1)
        if (new == labels).all():
            break
        labels = new
        for c in range(k):
            members = features[labels == c]
            if len(members):
                centres[c] = members.mean(0)
    return labels


def grouped_order(labels: np.ndarray, group: int, generator: torch.Generator) -> torch.Tensor:
    """A permutation of 0..N-1 in runs of ``group`` indices from one cluster each, the runs in
    random order. The items left over when a cluster does not fill its last run are shuffled
    together into mixed runs among them, and the last few that fill no run come last, so
    every item is used once and every run starts at a multiple of ``group``."""
    runs, spare = [], []
    for c in np.unique(labels):
        members = torch.from_numpy(np.flatnonzero(labels == c))
        members = members[torch.randperm(len(members), generator=generator)]
        full = len(members) // group * group
        runs += list(members[:full].view(-1, group))
        spare.append(members[full:])
    spare = torch.cat(spare)
    spare = spare[torch.randperm(len(spare), generator=generator)]
    full = len(spare) // group * group
    runs += list(spare[:full].view(-1, group))
    order = torch.randperm(len(runs), generator=generator)
    return torch.cat([*(runs[i] for i in order), spare[full:]])
