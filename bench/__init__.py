"""The benchmarks behind the figures in docs/results.md and docs/experiments.md.

Each is a module run from the repository root, ``.venv/bin/python -m bench.NAME`` (``--help``
lists its options), and writes its own marked section through ``bench.common.write_section``;
the command that regenerates a figure is written next to it.
"""
