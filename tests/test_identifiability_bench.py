"""The identifiability benchmark's ablation can be split over processes by row."""

from __future__ import annotations

import pytest

from bench.identifiability import ABLATION, configs_of, parse


def test_rows_select_those_ablation_rows_and_write_no_docs():
    args = parse(["--ablation", "--rows", "1,3"])
    labels = list(ABLATION)
    assert list(configs_of(args)) == [labels[0], labels[2]]
    assert args.no_write_docs  # a part of the table never overwrites the whole one
    assert list(configs_of(parse(["--ablation"]))) == labels


@pytest.mark.parametrize(
    "argv", [["--rows", "1"], ["--ablation", "--rows", "0"], ["--ablation", "--rows", "a"]]
)
def test_rows_outside_the_ablation_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        parse(argv)
    assert "--rows" in capsys.readouterr().err
