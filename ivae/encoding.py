"""The one batched-encoding loop: a model's encoders over many items, a batch at a time.

``Run.encode_x`` / ``encode_y`` (the Python API and ``ivae index``) and ``ivae.evaluate``
(held-out metrics during and after training) all encode through ``encode_batched``.
"""

from __future__ import annotations

import numpy as np
import torch

SIDES = ("x", "y")


@torch.no_grad()
def encode_batched(
    model,
    side: str,
    inputs,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: str | None = None,
) -> tuple[np.ndarray, ...]:
    """Encode ``inputs`` (N, ...) with ``model.encode_x`` (side ``x``) or ``encode_y`` (``y``).

    Returns float32 numpy arrays: ``(z,)`` (N, k) for images, ``(mean, logvar)`` (N, k) each
    for queries. ``progress``: a label for a progress bar (None: no bar).
    """
    if side not in SIDES:
        raise ValueError(f"side must be 'x' or 'y', got {side!r}")
    encode = model.encode_x if side == "x" else model.encode_y
    starts = range(0, len(inputs), batch_size)
    if progress is not None:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"encoding {progress}", unit="batch")
    parts: list[tuple[torch.Tensor, ...]] = []
    for start in starts:
        out = encode(torch.as_tensor(inputs[start : start + batch_size]).to(device))
        parts.append(tuple(t.float().cpu() for t in (out if isinstance(out, tuple) else (out,))))
    if not parts:
        empty = np.zeros((0, model.config.latent_dim), np.float32)
        return (empty,) if side == "x" else (empty, empty.copy())
    return tuple(torch.cat(column).numpy() for column in zip(*parts, strict=True))
