"""The README cannot drift from the code: every `ivae ...` command in its code blocks parses
with the CLI's own parser and names models, presets and model options that exist, and every
`make` target it names is in the Makefile."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from ivae.cli import build_parser, train_options
from ivae.models import model_class

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_lines(markdown: str) -> list[str]:
    """The lines of every fenced code block, backslash continuations joined."""
    lines = []
    for block in FENCE.findall(markdown):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            lines.append(pending + line)
            pending = ""
        if pending:
            lines.append(pending)
    return lines


def commands(markdown: str, program: str) -> list[list[str]]:
    """Each ``program ...`` command of the code blocks as its arguments, comments dropped."""
    found = []
    for line in code_lines(markdown):
        words = shlex.split(line, comments=True)
        if words[:1] == ["$"]:
            words = words[1:]
        if words[:1] == [program]:
            found.append(words[1:])
    return found


def make_targets(markdown: str) -> set[str]:
    """`make TARGET` in inline code and at the start of code-block lines."""
    inline = re.findall(r"`make ([\w-]+)[^`]*`", markdown)
    blocks = [words[0] for words in commands(markdown, "make") if words]
    return set(inline) | set(blocks)


def check(args: list[str]) -> None:
    """Parse with the CLI's parser and resolve what the command names; AssertionError with the
    parser's message otherwise."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = build_parser().parse_args(args)
    except SystemExit:
        raise AssertionError(stderr.getvalue().strip()) from None
    if parsed.command == "train":
        model, options, _ = train_options(parsed)  # an unknown preset raises here
        model_class(model).Config.from_json(options)  # an unknown model or option here


def test_the_extractor_joins_continuations_and_skips_comments():
    markdown = (
        "text ivae train --nope\n```bash\n# ivae comment only\nsource x\n"
        "ivae train --data d \\\n    --preset kitchen --out r   # trailing comment\n"
        "$ ivae models\nmake run  # opens it\n```\nUse `make test-fast` or `make lint`.\n"
    )
    assert commands(markdown, "ivae") == [
        ["train", "--data", "d", "--preset", "kitchen", "--out", "r"],
        ["models"],
    ]
    assert make_targets(markdown) == {"run", "test-fast", "lint"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "d", "--out", "r", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--data", "d", "--out", "r", "--model", "nope"], "unknown model 'nope'"),
        (["train", "--data", "d", "--out", "r", "--preset", "kitchen", "--set", "wat=1"], "wat"),
        (["train", "--data", "d", "--out", "r", "--batch-sise", "8"], "unrecognized arguments"),
        (["evaluat", "runs/x"], "invalid choice"),
    ],
)
def test_a_drifted_command_is_caught(args, message):
    with pytest.raises((AssertionError, ValueError), match=message):
        check(args)


README_COMMANDS = commands(README, "ivae")


@pytest.mark.parametrize("args", README_COMMANDS, ids=[" ".join(a) for a in README_COMMANDS])
def test_every_readme_command_parses_and_names_what_exists(args):
    try:
        check(args)
    except (AssertionError, ValueError) as exc:
        pytest.fail(f"README.md: `ivae {shlex.join(args)}`: {exc}")


def test_the_readme_trains_the_shipped_recipe_by_its_preset():
    """The shipped recipe is named, not spelled out (ivae/presets.py holds it once)."""
    trains = [args for args in README_COMMANDS if args[:1] == ["train"]]
    presets = [build_parser().parse_args(args).preset for args in trains]
    assert "kitchen" in presets


def test_every_make_target_the_readme_names_exists():
    makefile = (ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([\w-]+)\s*:(?!=)", makefile, re.MULTILINE))
    named = make_targets(README)
    assert {"run", "test", "default-model"} <= named
    missing = sorted(named - defined)
    assert not missing, f"README.md names make target(s) {missing} that the Makefile lacks"
