"""The checkpoint schema version, shared by the trainer that writes runs and the loader that
reads them (kept apart from ``ivae.train`` so that loading a run never imports the trainer)."""

from __future__ import annotations

# Bump when config.json / model.pt change shape; load_run refuses runs of another version.
CONFIG_VERSION = 1
