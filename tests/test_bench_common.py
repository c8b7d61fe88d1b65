"""The benchmarks' one results writer: a marked section is replaced or appended, and every
byte outside it is kept (other benchmarks own the other sections)."""

from __future__ import annotations

from bench.common import ROOT, command, read_section, shown, write_section

DOC = (
    "# Results\n\nIntro text.\n\n"
    "<!-- kitchen:begin -->\nold kitchen table\n<!-- kitchen:end -->\n\n"
    "Between the sections: `code`, ünïcode, trailing spaces   \n\n"
    "<!-- latency:begin -->\nold latency\n\n| a | b |\n<!-- latency:end -->\n"
    "Closing line without a blank line before it.\n"
)


def test_an_existing_section_is_replaced_and_the_rest_kept_byte_for_byte(tmp_path):
    path = tmp_path / "results.md"
    path.write_text(DOC)
    write_section("kitchen", "new kitchen table\n\nsecond paragraph\n\n", path)
    expected = DOC.replace(
        "old kitchen table\n", "new kitchen table\n\nsecond paragraph\n"
    )  # the body's trailing blank lines are dropped
    assert path.read_text() == expected


def test_the_last_section_of_a_file_is_replaced_too(tmp_path):
    path = tmp_path / "results.md"
    path.write_text(DOC)
    write_section("latency", "new latency", path)
    assert path.read_text() == DOC.replace("old latency\n\n| a | b |\n", "new latency\n")


def test_a_new_section_is_appended_after_the_others(tmp_path):
    path = tmp_path / "results.md"
    path.write_text(DOC)
    write_section("recipe1m", "| recipes |\n|---|", path)
    text = path.read_text()
    assert text == DOC + "\n<!-- recipe1m:begin -->\n| recipes |\n|---|\n<!-- recipe1m:end -->\n"
    write_section("recipe1m", "| rows |", path)  # now there: replaced, not appended again
    assert path.read_text() == text.replace("| recipes |\n|---|", "| rows |")


def test_a_section_reads_back_as_written_and_a_missing_one_as_empty(tmp_path):
    path = tmp_path / "results.md"
    path.write_text(DOC)
    assert read_section("latency", path) == "old latency\n\n| a | b |\n"
    write_section("kitchen", "| row | 1 |", path)
    assert read_section("kitchen", path) == "| row | 1 |\n"
    assert read_section("recipe1m", path) == "" and read_section("x", tmp_path / "none.md") == ""


def test_a_missing_file_is_created_with_the_section_alone(tmp_path):
    path = tmp_path / "docs" / "method.md"
    write_section("ablation", "a table", path)
    assert path.read_text() == "<!-- ablation:begin -->\na table\n<!-- ablation:end -->\n"


def test_a_body_with_regex_replacement_characters_is_written_as_is(tmp_path):
    path = tmp_path / "results.md"
    path.write_text(DOC)
    body = r"\1 \g<0> $1 \\ backslashes stay"
    write_section("kitchen", body, path)
    assert f"<!-- kitchen:begin -->\n{body}\n<!-- kitchen:end -->" in path.read_text()


def test_the_command_written_next_to_a_figure_runs_the_module():
    assert (
        command("bench.kitchen", ["--seeds", "3"]) == ".venv/bin/python -m bench.kitchen --seeds 3"
    )
    assert command("bench.default_run", []) == ".venv/bin/python -m bench.default_run"


def test_paths_are_shown_from_the_repository_root_when_inside_it(tmp_path):
    assert shown(ROOT / "data" / "kitchen") == "data/kitchen"
    assert shown(ROOT / "assets" / ".." / "data") == "data"
    assert shown(tmp_path) == str(tmp_path.resolve())
