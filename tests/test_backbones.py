"""Backbones: the registry, strict weight loading, preprocessing, and known answers on real
photos (scikit-image's and scikit-learn's sample photos), which prove that the weights, the
architecture and the input normalisation agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ivae.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, BackboneError, get_backbone
from ivae.backbones.base import fold_batch_norms
from ivae.backbones.efficientnet_lite0 import (
    LAST_BLOCK,
    STAGES,
    EfficientNetLite0,
    EfficientNetLite0Stages,
    EfficientNetLite0Stats,
    EfficientNetLite0Tail,
    SameConv2d,
)
from ivae.backbones.resnet import ResNet50

skimage_data = pytest.importorskip("skimage.data")

# photo -> ImageNet classes any of which in the top 5 is right
KNOWN = {
    "coffee": {967, 968},  # espresso, cup
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "flower": {985},  # daisy (scikit-learn's flower.jpg)
    "china": {698},  # palace (scikit-learn's china.jpg, the Summer Palace)
}


def photos() -> dict[str, Image.Image]:
    from sklearn.datasets import load_sample_images

    sk = load_sample_images()
    named = dict(zip((f.rsplit("/", 1)[-1][:-4] for f in sk.filenames), sk.images, strict=True))
    arrays = {"coffee": skimage_data.coffee(), "chelsea": skimage_data.chelsea(), **named}
    return {name: Image.fromarray(arrays[name]) for name in KNOWN}


@pytest.fixture(scope="module")
def lite0():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return get_backbone("efficientnet-lite0")


@pytest.fixture(scope="module")
def lite0_probs(lite0) -> dict[str, np.ndarray]:
    images = photos()
    probs = torch.tensor(lite0.logits(list(images.values()))).softmax(-1).numpy()
    return dict(zip(images, probs, strict=True))


# ---- registry -------------------------------------------------------------------------------
def test_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(
        BackboneError,
        match="choose one of: efficientnet-lite0, efficientnet-lite0-stages, "
        "efficientnet-lite0-stats, efficientnet-lite0-tail, efficientnet-lite0-stages-tail, "
        "resnet50, cnn",
    ):
        get_backbone("vgg16")


def test_cnn_is_registered_without_pretrained_features():
    assert not BACKBONES["cnn"].pretrained and BACKBONES["efficientnet-lite0"].pretrained
    with pytest.raises(BackboneError, match="no pretrained features"):
        get_backbone("cnn")


# ---- EfficientNet-Lite0 ---------------------------------------------------------------------
def test_lite0_parameter_names_are_the_package_state_dict_both_ways(lite0):
    shipped = torch.load(lite0.weights_path, map_location="cpu", weights_only=True)
    ours = EfficientNetLite0().state_dict()
    assert len(shipped) == len(ours) == 296
    assert set(ours) == set(shipped)  # no missing and no unexpected key
    assert all(ours[k].shape == shipped[k].shape for k in ours)


def test_same_padding_is_asymmetric_for_stride_two_on_even_inputs():
    conv = SameConv2d(1, 1, 3, stride=2)
    x = torch.randn(1, 1, 8, 8)
    expected = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (0, 1, 0, 1)), conv.weight, stride=2
    )
    assert torch.allclose(conv(x), expected)
    assert conv(x).shape[-1] == 4


@pytest.mark.parametrize("name", list(KNOWN))
def test_lite0_known_answer_top5(lite0_probs, name):
    top5 = set(np.argsort(lite0_probs[name])[::-1][:5].tolist())
    assert top5 & KNOWN[name], f"{name}: top-5 {sorted(top5)} lacks {sorted(KNOWN[name])}"


def test_lite0_espresso_is_top1_with_high_probability(lite0_probs):
    assert lite0_probs["coffee"].argmax() == 967 and lite0_probs["coffee"][967] > 0.8


def known_log_prob(backbone, mean, std) -> float:
    """Sum over the photos of log P(any right class): how well an input normalisation fits."""
    saved = backbone.mean, backbone.std
    backbone.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    backbone.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    try:
        probs = torch.tensor(backbone.logits(list(photos().values()))).softmax(-1).numpy()
    finally:
        backbone.mean, backbone.std = saved
    return float(sum(np.log(p[sorted(KNOWN[n])].sum()) for n, p in zip(KNOWN, probs, strict=True)))


def test_lite0_normalisation_is_tensorflows_not_imagenets(lite0):
    """The weights come from TensorFlow's EfficientNet-Lite, trained on (x - 127) / 128; the
    torchvision ImageNet mean/std fits the known answers worse."""
    ours = known_log_prob(lite0, lite0.mean.flatten().tolist(), lite0.std.flatten().tolist())
    imagenet = known_log_prob(lite0, IMAGENET_MEAN, IMAGENET_STD)
    print(f"sum log P(right class): (x-127)/128 {ours:.3f}, ImageNet mean/std {imagenet:.3f}")
    assert ours > imagenet + 0.3


# ---- preprocessing --------------------------------------------------------------------------
def test_preprocess_accepts_pil_nhwc_and_nchw_alike(lite0):
    rgb = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    from_pil = lite0.preprocess([Image.fromarray(a) for a in rgb])
    assert from_pil.shape == (2, 3, 224, 224) and from_pil.dtype == torch.float32
    assert torch.equal(from_pil, lite0.preprocess(rgb))
    assert torch.equal(from_pil, lite0.preprocess(rgb.transpose(0, 3, 1, 2)))
    assert lite0.preprocess(rgb[:, :100, :150]).shape == (2, 3, 224, 224)  # cropped, resized


def test_preprocess_refuses_float_images_in_one_line(lite0):
    with pytest.raises(BackboneError, match="uint8") as error:
        lite0.preprocess(np.zeros((1, 8, 8, 3), np.float32))
    assert "\n" not in str(error.value)


def test_image_size_is_a_parameter():
    small = get_backbone("efficientnet-lite0", image_size=128)
    features = small.features(skimage_data.coffee()[None])
    assert small.image_size == 128 and features.shape == (1, 1280) and features.dtype == np.float32


def test_unreadable_weights_name_the_file(tmp_path):
    bad = tmp_path / "lite0.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match=str(bad)) as error:
        get_backbone("efficientnet-lite0", weights=bad)
    assert "\n" not in str(error.value)


# ---- ResNet-50 ------------------------------------------------------------------------------
@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def test_resnet50_keys_are_torchvisions():
    keys = ResNet50().state_dict()
    assert len(keys) == 320  # 267 tensors and the 53 batch norms' step counters
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight",
                "layer4.2.conv3.weight", "layer3.5.bn2.bias", "fc.weight", "fc.bias"):  # fmt: skip
        assert key in keys


def test_resnet50_loads_from_the_torch_hub_cache(torch_home):
    state = ResNet50().state_dict()  # as the 2017 file: no batch-norm step counters
    torch.save(
        {k: v for k, v in state.items() if "num_batches" not in k},
        torch_home / "resnet50-0123abcd.pth",
    )
    backbone = get_backbone("resnet50", image_size=64)
    images = np.random.default_rng(0).integers(0, 256, (2, 80, 80, 3), dtype=np.uint8)
    assert backbone.features(images).shape == (2, 2048)
    assert backbone.logits(images).shape == (2, 1000)
    assert len(backbone.weights_hash) == 8


def test_resnet50_missing_weights_say_how_to_get_them(torch_home):
    with pytest.raises(BackboneError) as error:
        get_backbone("resnet50")
    message = str(error.value)
    assert "\n" not in message and str(torch_home) in message
    assert "download.pytorch.org/models/resnet50" in message and "--backbone-weights" in message


@pytest.mark.parametrize("damage", ["missing key", "wrong shape", "unexpected key"])
def test_resnet50_mismatched_weights_name_the_file(tmp_path, damage):
    state = ResNet50().state_dict()
    if damage == "missing key":
        del state["layer2.1.conv2.weight"]
    elif damage == "wrong shape":
        state["fc.weight"] = torch.zeros(10, 2048)
    else:
        state["head.weight"] = torch.zeros(1)
    path = tmp_path / "resnet50-custom.pth"
    torch.save(state, path)
    with pytest.raises(BackboneError) as error:
        get_backbone("resnet50", weights=path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert {"missing key": "layer2.1.conv2.weight", "wrong shape": "fc.weight",
            "unexpected key": "head.weight"}[damage] in message  # fmt: skip


@pytest.mark.parametrize(
    "net", [EfficientNetLite0, EfficientNetLite0Stages, EfficientNetLite0Stats, ResNet50]
)
def test_folded_batch_norms_compute_the_same_function(net):
    torch.manual_seed(0)
    net = net().eval()
    for module in net.modules():  # batch norms with statistics, so folding is not a no-op
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    fast = fold_batch_norms(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = net.features(x)
        got = fast.features(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_lite0_stages_pools_the_last_block_of_every_stage():
    """The stage features are the spatial means of each stage's output, in order, computed by
    the same weights as the head's features (one forward pass for both)."""
    torch.manual_seed(0)
    head, stages = EfficientNetLite0().eval(), EfficientNetLite0Stages().eval()
    stages.load_state_dict(head.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outputs = []
    with torch.no_grad():
        h = torch.nn.functional.relu6(head._bn0(head._conv_stem(x)))
        for block in head._blocks:
            h = block(h)
            outputs.append(h.mean(dim=(2, 3)))
        got = stages.features(x)
    ends = np.cumsum([stage[-1] for stage in STAGES]) - 1
    torch.testing.assert_close(got, torch.cat([outputs[i] for i in ends], dim=1))
    assert got.shape == (2, EfficientNetLite0Stages.feature_dim) == (2, 784)


def test_lite0_stats_are_the_stage_means_then_their_standard_deviations():
    torch.manual_seed(0)
    stages, stats = EfficientNetLite0Stages().eval(), EfficientNetLite0Stats().eval()
    stats.load_state_dict(stages.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got = stats.features(x)
        maps = list(stages.stage_maps(x))
        means = stages.features(x)
    assert got.shape == (2, EfficientNetLite0Stats.feature_dim) == (2, 1568)
    torch.testing.assert_close(got[:, :784], means)
    last = maps[-1].flatten(2)  # the last stage's 320 channels, by hand
    expected = ((last - last.mean(-1, keepdim=True)) ** 2).sum(-1).div(last.shape[-1] - 1).sqrt()
    torch.testing.assert_close(got[:, -320:], expected)
    with torch.no_grad():  # 32 px: the last stages are one position, whose deviation is 0
        small = stats.features(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(small).all() and (small[:, -320:] == 0).all()


def test_lite0_stages_is_registered_with_the_same_weights(lite0):
    stages = get_backbone("efficientnet-lite0-stages")
    assert stages.name == "efficientnet-lite0-stages" and stages.feature_dim == 784
    assert stages.weights_hash == lite0.weights_hash
    stats = get_backbone("efficientnet-lite0-stats")
    assert stats.feature_dim == 1568 and stats.weights_hash == lite0.weights_hash


# ---- fine-tuning the last block: the trunk's map, then the tail ------------------------------
def test_lite0_trunk_then_tail_is_the_whole_network(lite0):
    """The cached map entering the last block, through the tail with the ImageNet weights, gives
    the pooled features of the whole network: fine-tuning starts from the frozen run's input."""
    trunk = get_backbone("efficientnet-lite0-tail", image_size=128)
    assert trunk.weights_hash == lite0.weights_hash
    assert trunk.feature_dim == 192 * 4 * 4  # 128 px: five stride-2 steps, 4 x 4
    tail = EfficientNetLite0Tail(trunk.feature_dim)
    tail.load_pretrained(lite0.net.state_dict())
    images = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    whole = get_backbone("efficientnet-lite0", image_size=128).features(images)
    with torch.no_grad():
        through_tail = tail.eval()(torch.from_numpy(trunk.features(images))).numpy()
    np.testing.assert_allclose(through_tail, whole, atol=1e-4)


def test_lite0_tail_takes_every_tensor_of_the_last_block_and_head_by_name(lite0):
    tail_keys = set(EfficientNetLite0Tail(192 * 16).state_dict())
    whole = lite0.net.state_dict()
    last = {k for k in whole if k.startswith(f"_blocks.{LAST_BLOCK}.")}
    head = {k for k in whole if k.startswith(("_conv_head.", "_bn1."))}
    assert tail_keys == last | head and last and head


def test_lite0_tail_keeps_imagenet_batch_statistics_while_training():
    tail = EfficientNetLite0Tail(192 * 16).train()
    before = {k: v.clone() for k, v in tail.state_dict().items() if "running" in k}
    tail(torch.randn(8, 192 * 16)).sum().backward()
    assert all(not m.training for m in tail.modules() if isinstance(m, torch.nn.BatchNorm2d))
    for key, value in tail.state_dict().items():
        if key in before:
            torch.testing.assert_close(value, before[key])
    assert tail._conv_head.weight.grad is not None  # the weights do train


def test_lite0_stages_trunk_then_tail_is_the_stages_network(lite0):
    """With the stage means, the trunk hands on the map and the frozen means of the stages before
    it; the tail, with the ImageNet weights, gives exactly the stages backbone's 784 features."""
    trunk = get_backbone("efficientnet-lite0-stages-tail", image_size=128)
    assert trunk.weights_hash == lite0.weights_hash
    assert trunk.feature_dim == 192 * 4 * 4 + 16 + 24 + 40 + 80 + 112
    tail = EfficientNetLite0Tail(trunk.feature_dim, stage_means=True)
    assert tail.out_dim == 784
    tail.load_pretrained(lite0.net.state_dict())
    assert set(tail.state_dict()) == {
        k for k in lite0.net.state_dict() if k.startswith(f"_blocks.{LAST_BLOCK}.")
    }  # no head convolution: the stage means do not read it
    images = np.random.default_rng(1).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    stages = get_backbone("efficientnet-lite0-stages", image_size=128).features(images)
    with torch.no_grad():
        through_tail = tail.eval()(torch.from_numpy(trunk.features(images))).numpy()
    np.testing.assert_allclose(through_tail, stages, atol=1e-4)


def test_lite0_tail_refuses_a_map_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"192 channels on a square map, then 272 stage means"):
        EfficientNetLite0Tail(192 * 16, stage_means=True)
    with pytest.raises(ValueError, match="192 channels"):
        EfficientNetLite0Tail(1280)
