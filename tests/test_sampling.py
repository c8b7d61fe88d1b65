"""Batches of alike recipes: the condition features, k-means and the grouped epoch order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ivae
from ivae.sampling import condition_features, grouped_order, kmeans
from ivae.train import TrainConfig, Trainer, run_config, train


def test_kmeans_recovers_separated_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat(np.arange(3), 50)
    points = centres[truth] + rng.standard_normal((150, 2))
    labels = kmeans(points, 3, seed=0)
    # the same partition up to the clusters' names
    assert len(set(zip(truth, labels))) == 3 and len(set(labels)) == 3
    assert np.array_equal(labels, kmeans(points, 3, seed=0))


def test_text_features_ignore_padding_and_weigh_rare_words():
    y = np.array([[2, 3, 0, 0], [2, 4, 0, 0], [2, 3, 3, 0]])  # token 2 in every recipe
    features = condition_features(y, "text", vocab_size=5)
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0)
    assert (features[:, 0] == 0).all()  # padding
    assert features[0, 3] > features[0, 2]  # tf-idf: the common word weighs less
    vectors = condition_features(np.eye(3)[[0, 1, 2, 0]], "vector")  # standardised
    assert np.allclose(vectors.mean(0), 0, atol=1e-6) and np.allclose(vectors.std(0), 1)


def test_grouped_order_is_a_permutation_in_runs_of_one_cluster():
    labels = np.repeat(np.arange(4), [70, 33, 64, 5])  # clusters that do not fill their runs
    order = grouped_order(labels, 32, torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(len(labels)))  # every item once
    runs = order[: len(order) // 32 * 32].view(-1, 32)
    pure = sum(len(set(labels[run.numpy()])) == 1 for run in runs)
    assert pure == 70 // 32 + 33 // 32 + 64 // 32  # every full run of a cluster, whole
    again = grouped_order(labels, 32, torch.Generator().manual_seed(1))
    assert torch.equal(order, again)  # seeded: a resumed epoch replays its batches
    assert not torch.equal(order, grouped_order(labels, 32, torch.Generator().manual_seed(2)))


@pytest.fixture(scope="module")
def kitchen(tmp_path_factory):
    from ivae.data import load_dataset
    from ivae.data.kitchen import generate_kitchen

    path = tmp_path_factory.mktemp("kitchen")
    generate_kitchen(path, n=80, image_size=32, seed=0, progress=False)
    return load_dataset(path, image_size=32)


def test_grouped_batches_gather_recipes_of_one_dish(kitchen, tmp_path):
    config = TrainConfig(epochs=1, batch_size=16, batching="grouped", group_size=8, clusters=10)
    trainer = Trainer(kitchen, tmp_path, run_config(kitchen, "implicit-ivae",
                                                    {"latent_dim": 3, "hidden": 32}, config),
                      progress=False)
    dish = np.asarray(trainer.train_data.items["dish"].astype(str))
    # the clusters follow the dish types the titles name: each cluster is mostly one dish
    purity = sum(np.unique(dish[trainer.clusters == c], return_counts=True)[1].max()
                 for c in np.unique(trainer.clusters)) / len(dish)
    assert purity > 0.8
    order = grouped_order(trainer.clusters, 8, torch.Generator().manual_seed(0))
    assert len(set(trainer.clusters[order[:8].numpy()])) == 1
    train(kitchen, tmp_path / "run", "implicit-ivae", {"latent_dim": 3, "hidden": 32}, config,
          progress=False)
    assert ivae.load_run(tmp_path / "run").config["train"]["batching"] == "grouped"


@pytest.mark.parametrize("option", [
    {"batching": "sorted"}, {"group_size": 0}, {"clusters": 0},
    {"batching": "grouped", "batch_size": 16, "group_size": 32}])
def test_bad_batching_options_are_refused(option):
    with pytest.raises(ValueError, match="group_size" if "batch_size" in option
                       else next(iter(option))):
        TrainConfig(**option)
