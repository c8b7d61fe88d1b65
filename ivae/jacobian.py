"""Exact Jacobians of a k-output encoder, and the log-volume term of the implicit decoder.

For an injective encoder e: R^D -> R^k the change of variables on the data manifold gives
log p(x|y) = log p(e(x)|y) + 1/2 log det(J_e J_e^T), J_e the (k, D) Jacobian at x.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def encoder_jacobian(f: Callable[[torch.Tensor], torch.Tensor],
                     x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z = f(x) (B, k) and J (B, k, D) with D = prod(x.shape[1:]).

    Uses k vector-Jacobian products with ``create_graph=True`` (so J can be trained through);
    valid because samples in a batch are independent (no batch-coupling layers).
    """
    x = x.detach().float().requires_grad_(True)
    z = f(x)
    rows = [torch.autograd.grad(z[:, j].sum(), x, create_graph=True)[0].flatten(1)
            for j in range(z.shape[1])]
    return z, torch.stack(rows, dim=1)


def half_logdet_jjt(jac: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, k, D) -> (B,): 1/2 log det(J J^T), the k-volume the encoder gives a data patch.

    For D == k this equals log |det J|. ``eps`` keeps a rank-deficient J finite.
    """
    gram = jac @ jac.transpose(1, 2)
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    return 0.5 * torch.linalg.slogdet(gram + eps * eye)[1]


def frobenius_sq(jac: torch.Tensor) -> torch.Tensor:
    """(B, k, D) -> (B,): ||J||_F^2, the encoder's total sensitivity to its input."""
    return jac.pow(2).flatten(1).sum(1)
