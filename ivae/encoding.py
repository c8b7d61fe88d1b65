"""The one batched-encoding loop: a model's encoders over many items, a batch at a time.

``Run.encode_x`` / ``encode_y`` (the Python API and ``ivae index``) and ``ivae.evaluate``
(held-out metrics during and after training) all encode through ``encode_batched``.

Memory: the codes are written into arrays allocated once, at the first batch, and each
batch's tensors are freed before the next. Keeping every batch's small output tensors until
the end (and concatenating them) left one long-lived allocation behind each batch's large
temporaries (a text batch's (B, 96, L) activations); once glibc raises its mmap threshold
to their size, they go on the heap, which those small tensors pin and which then grows by
about a batch's temporaries per batch: encoding the 19,804 test recipes of a 200k-item data
set took ~800 MB (the photo data of bench/train_memory.py; its table in docs/results.md,
"Training memory", is measured with this code).
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
    outputs: tuple[np.ndarray, ...] = ()
    for start in starts:
        out = encode(torch.as_tensor(inputs[start : start + batch_size]).to(device))
        out = out if isinstance(out, tuple) else (out,)
        if not outputs:  # allocated once: see the module's note on memory
            outputs = tuple(np.empty((len(inputs), *t.shape[1:]), np.float32) for t in out)
        for array, t in zip(outputs, out, strict=True):
            array[start : start + len(t)] = t.float().cpu().numpy()
        del out
    if not outputs:
        empty = np.zeros((0, model.config.latent_dim), np.float32)
        return (empty,) if side == "x" else (empty, empty.copy())
    return outputs
