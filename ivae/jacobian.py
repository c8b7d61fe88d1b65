"""Exact Jacobians of a k-output encoder, and the log-volume term of the implicit decoder.

For an injective encoder e: R^D -> R^k the change of variables on the data manifold gives
log p(x|y) = log p(e(x)|y) + 1/2 log det(J_e J_e^T), J_e the (k, D) Jacobian at x
(docs/method.md, eq. 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def encoder_jacobian(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """z = f(x) (B, k) and J (B, k, D) with D = prod(x.shape[1:]).

    Uses k vector-Jacobian products with ``create_graph=True`` (so J can be trained through);
    valid because samples in a batch are independent (no batch-coupling layers), which makes
    d sum_b z_bj / d x_b the j-th row of sample b's own Jacobian.

    uint8 photos are differentiated as floats in [0, 1], the scale in which the image
    encoders read float input (``ivae.nets``): the same codes as on the uint8 batch, and J
    per unit of intensity. (Cast as they were, 0-255 read as [0, 1], the Jacobian's photos
    were 255 times too bright until this was caught.)
    """
    x = x.detach()
    x = (x.float() / 255 if x.dtype == torch.uint8 else x.float()).requires_grad_(True)
    z = f(x)
    rows = [
        torch.autograd.grad(z[:, j].sum(), x, create_graph=True)[0].flatten(1)
        for j in range(z.shape[1])
    ]
    return z, torch.stack(rows, dim=1)


def gram(jac: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """(B, k, D) -> (B, k, k): J J^T (+ eps I), the metric the encoder puts on the data."""
    g = jac @ jac.transpose(1, 2)
    if eps:
        g = g + eps * torch.eye(g.shape[-1], device=g.device, dtype=g.dtype)
    return g


def half_logdet_jjt(jac: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, k, D) -> (B,): 1/2 log det(J J^T), the k-volume the encoder gives a data patch.

    For D == k this equals log |det J| (computed directly: cheaper, and no eps bias).
    ``eps`` keeps a rank-deficient J finite.
    """
    if jac.shape[1] == jac.shape[2]:
        return torch.linalg.slogdet(jac)[1]
    return 0.5 * torch.linalg.slogdet(gram(jac, eps))[1]


def frobenius_sq(jac: torch.Tensor) -> torch.Tensor:
    """(B, k, D) -> (B,): ||J||_F^2, the encoder's total sensitivity to its input."""
    return jac.pow(2).flatten(1).sum(1)


def conditioning_gap(jac: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, k, D) -> (B,): log(arithmetic / geometric mean of the eigenvalues of J J^T).

    Zero iff J J^T is a multiple of the identity (e is conformal on the data); smooth, unlike
    a condition number, and it needs no eigen-decomposition (trace and log-det only).
    """
    g = gram(jac, eps)
    k = g.shape[-1]
    mean_eig = g.diagonal(dim1=1, dim2=2).sum(1) / k
    return torch.log(mean_eig) - torch.linalg.slogdet(g)[1] / k
