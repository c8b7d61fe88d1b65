"""The run's data on first launch: the dashboard regenerates the kitchen set when it is
missing (the shipped run carries only its ``dataset.json``), deterministically, from the
settings the run was trained on. Where the data lives is ``Run.data_dir(REPO_ROOT)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from explorer.runs import REPO_ROOT, read_json


def generation_settings(run) -> dict:
    """n, image_size and seed to regenerate the run's kitchen data deterministically.

    Read from ``<run>/dataset.json`` (the data's own info, shipped with a run) when present,
    else from config.json; the generator's defaults fill the rest.
    """
    info = read_json(Path(run.path) / "dataset.json")
    data = run.config.get("data", {})
    return {
        "n": int(info.get("n") or sum((info.get("counts") or {}).values()) or data["n_items"]),
        "image_size": int(info.get("image_size") or data.get("image_size") or 128),
        "seed": int(info.get("seed", data.get("seed", 0))),
    }


def regenerable(run) -> bool:
    """Whether the run's data is the embedded default, the procedural kitchen set that can be
    generated again from the run's own ``dataset.json`` (name "kitchen", made by ``ivae data
    kitchen``). Any other data set, whatever its name, is never generated in its place."""
    shipped = read_json(Path(run.path) / "dataset.json")
    return (
        run.config.get("data", {}).get("name") == "kitchen"
        and shipped.get("name") == "kitchen"
        and shipped.get("generator") == "ivae data kitchen"
    )


def stale_data(run, target: Path) -> str | None:
    """The version of the generator that made the data in ``target`` when it differs from the
    one the run was trained on (``<run>/dataset.json``), else None (also when there is no
    data yet): same seed, other recipes."""
    if not (target / "items.parquet").is_file():
        return None
    shipped = read_json(Path(run.path) / "dataset.json").get("version")
    found = read_json(target / "dataset.json").get("version")
    if shipped and found and found != shipped and regenerable(run):
        return str(found)
    return None


def ensure_data(run, root: Path = REPO_ROOT, generate: Callable | None = None) -> Path:
    """The run's data directory, regenerating the kitchen set there first if it is missing.

    Kitchen data made by another generator version than the run's is moved aside to
    ``<dir>-v<version>`` (nothing is deleted) and generated anew. Raises FileNotFoundError
    with what to do when the data is missing and is not kitchen data.
    """
    target = run.data_dir(root)
    old = stale_data(run, target)
    if old is not None:
        aside = target.with_name(f"{target.name}-v{old}")
        if aside.exists():
            raise FileExistsError(
                f"{target} was made by kitchen generator {old}, not the run's; "
                f"move it away ({aside} is taken) and reload to regenerate it"
            )
        target.rename(aside)
    if (target / "items.parquet").is_file():
        return target
    if not regenerable(run):
        raise FileNotFoundError(
            f"the data of run {run.path} is missing ({target}); put it back there or rebuild the "
            f"index on other data with `ivae index {run.path} --data PATH`"
        )
    if generate is None:
        from ivae.data.kitchen import generate_kitchen as generate
    generate(target, **generation_settings(run))
    return target


def count_images(directory: Path) -> int:
    """Image files under a data directory so far, or under the folder it is being generated
    in (``ivae.io.write_directory``), to follow a generator's progress."""
    directory = Path(directory)
    folders = [directory, *directory.parent.glob(f".{directory.name}.*.partial")]
    counts = [
        sum(1 for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".webp"))
        for folder in folders
        if folder.is_dir()
    ]
    return max(counts, default=0)
