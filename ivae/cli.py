"""The ``ivae`` command (docs/design.md, "Command line"). User mistakes end in one line on stderr
and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The training options a preset fills; a flag given on the command line wins over it.
TRAIN_FLAGS = (
    "epochs",
    "batch_size",
    "lr",
    "final_lr_fraction",
    "seed",
    "augment",
    "restarts",
    "restart_epochs",
    "align_steps",
)


def _bounded(kind, low, name_of_range: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {name_of_range}")
        return value

    return parse


positive_int = _bounded(int, 1, ">= 1")
non_negative_int = _bounded(int, 0, ">= 0")
non_negative_float = _bounded(float, 0.0, ">= 0")


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text} is out of range: must be > 0")
    return value


def _parse_option(text: str) -> tuple[str, object]:
    """``--set name=value`` for any model config field; the value is read as JSON if it can be."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes NAME=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        return key.strip().replace("-", "_"), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip().replace("-", "_"), raw


# ---- data ----------------------------------------------------------------------------
def cmd_data_toy(args) -> None:
    from ivae.data.toy import write_toy

    path = write_toy(
        args.out,
        sources=args.sources,
        data_dim=args.data_dim,
        segments=args.segments,
        per_segment=args.per_segment,
        modulate=args.modulate,
        noise=args.noise,
        seed=args.seed,
        mixing=args.mixing,
    )
    print(f"wrote {args.segments * args.per_segment} items to {path}")


def cmd_data_kitchen(args) -> None:
    from ivae.data.kitchen import generate_kitchen

    path = generate_kitchen(args.out, n=args.n, image_size=args.image_size, seed=args.seed)
    print(f"wrote {path}")


def cmd_data_shapes(args) -> None:
    from ivae.data.shapes import generate_shapes

    path = generate_shapes(args.out, n=args.n, image_size=args.image_size, seed=args.seed)
    print(f"wrote {path}")


def cmd_data_recipe1m(args) -> None:
    from ivae.data.recipe1m import import_recipe1m

    report = import_recipe1m(
        args.layer1,
        args.layer2,
        args.images,
        args.out,
        det_ingrs=args.det_ingrs,
        limit=args.limit,
        all_images=args.all_images,
    )
    print(json.dumps(report, indent=2, default=str))


# ---- models --------------------------------------------------------------------------
def cmd_models(args) -> None:
    from ivae.models import REGISTRY

    for name, cls in sorted(REGISTRY.items()):
        print(f"{name:15s} {cls.paper}")


def cmd_presets(args) -> None:
    from ivae.presets import PRESETS

    for name, preset in sorted(PRESETS.items()):
        print(f"{name:10s} {preset.description}\n{'':10s} {preset.command()}")


def train_options(args) -> tuple[str, dict, dict]:
    """(model, model options, TrainConfig fields): the preset's, then the flags given over
    them; a field neither names keeps TrainConfig's default."""
    from ivae.presets import preset

    base = preset(args.preset) if args.preset else None
    model = args.model or (base.model if base else None)
    if model is None and getattr(args, "resume", False):  # the run's own model
        saved = Path(args.out) / "config.json"
        model = json.loads(saved.read_text()).get("model") if saved.is_file() else None
    if model is None:
        raise ValueError(
            "ivae train needs --model NAME or --preset NAME (`ivae presets` lists them)"
        )
    options = {**base.model_options, "latent_dim": base.latent_dim} if base else {}
    if getattr(args, "backbone", None):
        # a head on a backbone's features codes one view's features: the mean over a photo's
        # 8 views is a photo encoder's (given with --set, the model refuses it by name)
        options.pop("symmetry", None)
    options.update(args.set or [])
    if args.latent_dim is not None:
        options["latent_dim"] = args.latent_dim
    fields = {k: getattr(base, k) for k in TRAIN_FLAGS} if base else {}
    fields.update({k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None})
    return model, options, fields


def finetuned_backbone(args, model: str) -> tuple[str, str]:
    """``--finetune-last-block``: the backbone whose features are the map entering the last
    block, and the implicit iVAE's encoder option that trains that block (ivae.head)."""
    from ivae.head import finetune_last_block

    if not args.backbone:
        raise ValueError(
            "--finetune-last-block goes with --backbone efficientnet-lite0 "
            "(or efficientnet-lite0-stages)"
        )
    if model != "implicit-ivae":
        raise ValueError(
            f"--finetune-last-block trains the implicit iVAE's encoder; got --model {model}"
        )
    return finetune_last_block(args.backbone)


def training_data(args, vocab, augment: str) -> tuple:
    """The data set, and for a backbone run (--backbone, or the resumed run's)
    train()'s ``views`` and ``backbone``: x is then the cached backbone features, of the 8
    flips and quarter turns under ``augment`` "dihedral"."""
    from ivae.data import load_dataset
    from ivae.train import TrainingError

    saved_path = Path(args.out) / "config.json"
    saved = json.loads(saved_path.read_text()) if args.resume and saved_path.exists() else {}
    expected = saved.get("backbone")
    name = args.backbone or (expected or {}).get("name")
    if not name:
        x = saved.get("data", {}).get("x", {})
        size = x["shape"][-1] if x.get("kind") == "image" else args.image_size or 64
        if args.image_size and size != args.image_size:
            raise TrainingError(
                f"--resume: {args.out} was trained on {size}-px photos (given --image-size "
                f"{args.image_size}); resume without it (the run was not changed)"
            )
        return load_dataset(args.data, vocab=vocab, image_size=size), {}
    if args.image_size:
        raise ValueError(
            "--image-size sets the photos' size for a model on pixels; a --backbone run reads "
            "its features at the size `ivae features --image-size` computed them"
        )
    from ivae.head import load_feature_data

    weights = args.backbone_weights or (expected or {}).get("weights")
    data, views, record = load_feature_data(
        args.data,
        name,
        weights,
        vocab=vocab,
        progress=not args.quiet,
        expected=expected,
        views=8 if augment == "dihedral" else 1,
    )
    if weights:
        record["weights"] = str(Path(weights).resolve())
    return data, {"views": views, "backbone": record}


def check_resume(args) -> dict:
    """``--resume`` with flags that describe another run than the one in --out: one line
    naming what differs (only the flags given are compared; the rest comes from the run).
    With ``--allow-changes`` the training options of ``RESUME_CHANGES`` may differ: they are
    returned, to be taken over the run's; anything else that differs is still refused."""
    from ivae.train import RESUME_CHANGES, TrainingError, load_checkpoint, resume_mismatch

    saved = load_checkpoint(Path(args.out) / "last.pt")["config"]
    options = dict(args.set or [])
    if args.latent_dim is not None:
        options["latent_dim"] = args.latent_dim
    fields = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    saved_train = saved.get("train", {})
    changes = {k: v for k, v in fields.items() if saved_train.get(k) != v}
    changes = {k: v for k, v in changes.items() if k in RESUME_CHANGES and args.allow_changes}
    fields = {k: v for k, v in fields.items() if k not in changes}
    why = resume_mismatch(saved, args.model or saved["model"], options, fields)
    if args.preset and args.preset != saved.get("preset"):
        why = f"it was trained with preset {saved.get('preset')!r} (given {args.preset!r})"
    if why:
        allowed = " or ".join(f"--{k.replace('_', '-')}" for k in RESUME_CHANGES)
        raise TrainingError(
            f"--resume: {args.out} holds another configuration: {why}; resume with the run's "
            f"own flags (or none of them; {allowed} may change with --allow-changes), or train "
            "this one into another --out (the run was not changed)"
        )
    if args.allow_changes and not changes:
        print("ivae: --allow-changes: no option differs from the run's", file=sys.stderr)
    return changes


def resumed_vocab(args):
    """The resumed run's own vocabulary (ivae.run.read_vocab: required for text queries)."""
    from ivae.run import read_vocab
    from ivae.train import load_checkpoint

    return read_vocab(Path(args.out), load_checkpoint(Path(args.out) / "last.pt")["config"])


def cmd_train(args) -> None:
    from ivae.models import model_class
    from ivae.models.implicit_ivae import PRETRAINED
    from ivae.train import TrainConfig, train

    model, options, fields = train_options(args)
    if args.finetune_last_block:
        args.backbone, options["encoder"] = finetuned_backbone(args, model)
    model_class(model).Config.from_json(options)  # unknown names fail before data loads
    if args.backbone and options.get("encoder") == PRETRAINED:
        raise ValueError(
            "encoder=efficientnet-lite0 fine-tunes the whole network on the photos: drop "
            "--backbone (which trains a head on the frozen network's cached features)"
        )
    if args.allow_changes and not args.resume:
        raise ValueError("--allow-changes goes with --resume (it lets a resumed run change)")
    changes = check_resume(args) if args.resume else {}
    config = TrainConfig(**fields, device=args.device, checkpoint_seconds=args.checkpoint_seconds)
    vocab = resumed_vocab(args) if args.resume else None
    data, features = training_data(args, vocab, config.augment)
    metrics = train(
        data,
        args.out,
        model,
        options,
        config,
        resume=args.resume,
        progress=not args.quiet,
        **features,
        preset=args.preset,
        workers=args.workers,
        rendezvous_timeout=args.rendezvous_timeout,
        changes=changes,
    )
    if metrics:  # under torchrun rank 0 alone reports
        print(json.dumps({k: metrics[k] for k in ("model", "mcc", "train_seconds")}))


def cmd_evaluate(args) -> None:
    from ivae.evaluate import evaluate
    from ivae.run import load_run

    run = load_run(args.run_dir)
    data = run.load_data(args.data)
    report = evaluate(run.model, data, split=args.split)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['model']} on {report['n_items']} {report['split']} items of {data.source}")
    if report["mcc"] is not None:
        print(f"  MCC {report['mcc']:.3f} (Spearman {report['mcc_spearman']:.3f})")
        for name, value in report["mcc_per_factor"].items():
            shown = "unmatched" if value is None else f"{value:.3f}"
            print(f"    {name:20s} {shown}")
    for direction in ("x_to_y", "y_to_x"):
        r = report["retrieval"][direction]
        print(
            f"  {direction}: medR {r['medr']:.1f}  R@1 {r['r1']:.1f}  R@5 {r['r5']:.1f}  "
            f"R@10 {r['r10']:.1f}"
        )


def cmd_name(args) -> None:
    from ivae.io import run_lock
    from ivae.run import load_run, name_from_truth

    run = load_run(args.run_dir)
    with run_lock(run.path, "ivae name"):
        notes = name_from_truth(run, run.load_data(args.data))
    for f in notes["factors"]:
        print(f"factor {f['index'] + 1}: {f['name']} (sign {f['sign']:+d})")
    print(f"wrote {run.path / 'factors.json'}; rebuild the index: ivae index {run.path}")


def cmd_index(args) -> None:
    from ivae.familiarity import build_familiarity, reads_photos
    from ivae.index import build_index
    from ivae.io import run_lock
    from ivae.run import load_run

    run = load_run(args.run_dir)
    with run_lock(run.path, "ivae index"):
        data = run.load_data(args.data) if args.data else None
        build_index(run, data=data)
        print(f"indexed {args.run_dir}")
        if reads_photos(run):  # the Photo reader's unfamiliarity check (ivae.familiarity)
            check = build_familiarity(run, data_dir=args.data)
            print(f"unfamiliarity check: {check.backbone}, threshold {check.threshold:.3f}")


def cmd_read_photo(args) -> int:
    from ivae.read_photo import read_photo_command

    return read_photo_command(args.run_dir, args.photos, args.json)


def cmd_features(args) -> None:
    import torch

    from ivae.features import feature_cache

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cache = feature_cache(
            args.data,
            args.backbone,
            image_size=args.image_size,
            views=args.views,
            batch_size=args.batch_size,
            weights=args.backbone_weights,
            progress=not args.quiet,
            device=args.device,
        )
    except KeyboardInterrupt:
        print("ivae: interrupted; run the same command again to continue", file=sys.stderr)
        raise SystemExit(130) from None
    n, views, dim = cache.features.shape
    print(f"{cache.directory}: {n} items x {views} views x {dim} features (float16)")


def one_line(error: BaseException) -> str:
    """An error's message on one line (a WriteError's text is its strerror)."""
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return " ".join(text.split()) or type(error).__name__


# ---- the parser ----------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """Usage mistakes as one line (the full usage is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ivae", description=__doc__.split(".")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate or import a dataset").add_subparsers(
        dest="dataset", required=True
    )
    toy = data.add_parser("toy", help="the iVAE synthetic protocol (.npz)")
    toy.add_argument("--out", required=True)
    toy.add_argument("--sources", type=positive_int, default=5)
    toy.add_argument("--data-dim", type=positive_int, default=5)
    toy.add_argument("--segments", type=positive_int, default=40)
    toy.add_argument("--per-segment", type=positive_int, default=1000)
    toy.add_argument("--modulate", choices=["variance", "mean-variance"], default="variance")
    toy.add_argument("--noise", type=non_negative_float, default=0.0)
    toy.add_argument(
        "--mixing",
        choices=["repeat", "independent"],
        default="repeat",
        help="repeat: the layers after the first reuse one matrix, as the iVAE "
        "authors' code does; independent: every layer draws its own",
    )
    toy.add_argument("--seed", type=non_negative_int, default=0)
    toy.set_defaults(func=cmd_data_toy)
    for name, n, size, func in (
        ("kitchen", 20000, 128, cmd_data_kitchen),
        ("shapes", 10000, 64, cmd_data_shapes),
    ):
        p = data.add_parser(name, help=f"the procedural {name} image/text set")
        p.add_argument("--out", required=True)
        p.add_argument("--n", type=positive_int, default=n)
        p.add_argument("--image-size", type=_bounded(int, 16, ">= 16"), default=size)
        p.add_argument("--seed", type=non_negative_int, default=0)
        p.set_defaults(func=func)
    r1m = data.add_parser("recipe1m", help="import the Recipe1M layout")
    r1m.add_argument("--layer1", required=True)
    r1m.add_argument("--layer2", required=True)
    r1m.add_argument("--det-ingrs")
    r1m.add_argument("--images", required=True)
    r1m.add_argument("--out", required=True)
    r1m.add_argument("--limit", type=positive_int)
    r1m.add_argument("--all-images", action="store_true", help="one row per image, not per recipe")
    r1m.set_defaults(func=cmd_data_recipe1m)

    # The options a preset fills default to None here: None means "not given", so the preset's
    # value (or else TrainConfig's default) applies.
    train = sub.add_parser("train", help="train a model into a run directory")
    train.add_argument("--data", required=True)
    train.add_argument(
        "--preset",
        help="a named recipe (`ivae presets`) that fills every option; flags given override it",
    )
    train.add_argument("--model", help="a registered model (`ivae models`); or take a --preset's")
    train.add_argument("--out", required=True)
    train.add_argument("--latent-dim", type=positive_int)
    train.add_argument("--epochs", type=positive_int, help="(default 30)")
    train.add_argument("--batch-size", type=_bounded(int, 2, ">= 2"), help="(default 256)")
    train.add_argument("--lr", type=positive_float, help="(default 0.001)")
    train.add_argument(
        "--final-lr-fraction",
        type=_bounded(float, 0.0, ">= 0"),
        help="the cosine schedule decays the learning rate to this fraction of it (default 0.1)",
    )
    train.add_argument("--seed", type=non_negative_int, help="(default 0)")
    train.add_argument(
        "--restarts",
        type=positive_int,
        help="initialisations to try; the best by the validation objective goes on (default 1)",
    )
    train.add_argument(
        "--restart-epochs",
        type=positive_int,
        help="epochs each initialisation trains before the choice (default 2)",
    )
    train.add_argument(
        "--align-steps",
        type=non_negative_int,
        help="after the epochs, steps of the final alignment: the density ratio on a k x k map "
        "of the training codes and the prior's last layer; none by default (default 0)",
    )
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    train.add_argument(
        "--augment",
        choices=["none", "dihedral"],
        help="dihedral: random flips and quarter turns of training images (default none)",
    )
    train.add_argument(
        "--backbone",
        help="a pretrained image backbone (e.g. efficientnet-lite0): train the encoder head "
        "on its cached features (`ivae features`) instead of a CNN on pixels",
    )
    train.add_argument("--backbone-weights", help="the backbone's weight file, if not the default")
    train.add_argument(
        "--image-size",
        type=_bounded(int, 16, ">= 16"),
        help="photos are decoded at this size for a model on pixels (default 64; a resumed "
        "run keeps its own). E.g. 128 with --set encoder=efficientnet-lite0, which fine-tunes "
        "the whole pretrained network on the photos (meant for CUDA)",
    )
    train.add_argument(
        "--finetune-last-block",
        action="store_true",
        help="with --backbone efficientnet-lite0: train its last block with the encoder head "
        "(the cached features are then the map entering that block; the earlier blocks stay "
        "frozen). Meant for CUDA; on CPU an epoch of kitchen takes minutes",
    )
    train.add_argument(
        "--set",
        action="append",
        type=_parse_option,
        metavar="NAME=VALUE",
        help="any model option, e.g. --set ratio_weight=0.5",
    )
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument(
        "--allow-changes",
        action="store_true",
        help="with --resume: continue under the --epochs / --lr given (else a change is refused)",
    )
    train.add_argument(
        "--checkpoint-seconds",
        type=non_negative_float,
        default=30.0,
        help="save last.pt at least this often within an epoch",
    )
    train.add_argument(
        "--workers",
        type=non_negative_int,
        default=0,
        help="processes reading the training batches (default 0: read in the trainer)",
    )
    train.add_argument(
        "--rendezvous-timeout",
        type=positive_float,
        default=1800.0,
        help="under torchrun: seconds to wait for the other processes (default 1800)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="MCC and retrieval on held-out data")
    ev.add_argument("run_dir")
    ev.add_argument("--data")
    ev.add_argument("--split", choices=["test", "val", "train", "all"], default="test")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    index = sub.add_parser("index", help="codes and the 2-D map for the dashboard")
    index.add_argument("run_dir")
    index.add_argument("--data")
    index.set_defaults(func=cmd_index)

    read = sub.add_parser("read-photo", help="factor values and unfamiliarity of photos")
    read.add_argument("run_dir")
    read.add_argument("photos", nargs="+", metavar="PHOTO")
    read.add_argument("--json", action="store_true", help="a JSON list, one object per photo")
    read.set_defaults(func=cmd_read_photo)

    name = sub.add_parser("name", help="name and orient factors after the true ones they match")
    name.add_argument("run_dir")
    name.add_argument("--data")
    name.set_defaults(func=cmd_name)

    feats = sub.add_parser("features", help="pooled backbone features of a dataset, cached")
    feats.add_argument("data")
    feats.add_argument(
        "--backbone",
        required=True,
        help="a pretrained backbone, e.g. efficientnet-lite0 (an unknown name lists them all)",
    )
    feats.add_argument("--backbone-weights", metavar="PATH", help="a state dict to use instead")
    feats.add_argument("--image-size", type=_bounded(int, 32, ">= 32"), help="default: the data's")
    feats.add_argument("--batch-size", type=positive_int, default=64)
    feats.add_argument(
        "--views", type=int, choices=[8, 1], default=8, help="8: every flip and quarter turn"
    )
    feats.add_argument("--threads", type=positive_int, help="CPU threads (default: all)")
    feats.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the backbone runs (auto: CUDA when there is one); photos decode on the CPU",
    )
    feats.add_argument("--quiet", action="store_true", help="no progress bar")
    feats.set_defaults(func=cmd_features)

    sub.add_parser("models", help="list the registered models").set_defaults(func=cmd_models)
    sub.add_parser("presets", help="list the training presets").set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ivae.data.dataset import DataError
    from ivae.io import LockedError, WriteError
    from ivae.run import RunError
    from ivae.train import TrainingError

    args = build_parser().parse_args(argv)
    expected = (DataError, RunError, TrainingError, LockedError, WriteError, FileNotFoundError)
    try:
        status = args.func(args)
    except (*expected, ValueError) as exc:
        print(f"ivae: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ivae: interrupted; a training run continues with --resume", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
