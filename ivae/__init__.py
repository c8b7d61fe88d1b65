"""Factor Explorer's backend: the implicit identifiable VAE and its baselines.

import ivae
run = ivae.load_run("assets/default-run")
z = run.encode_x(images)            # (N, k) factor values
mean, logvar = run.encode_y(texts)  # the conditional prior p(z | y)
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_run", "Run", "RunError"]


def __getattr__(name: str):
    # Lazy: `import ivae` stays cheap for the CLI's --help and the dashboard's first paint.
    if name in __all__:
        from ivae import run

        return getattr(run, name)
    raise AttributeError(f"module 'ivae' has no attribute {name!r}")
