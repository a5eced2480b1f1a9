"""BMKP's knowledge projection as linear algebra: pure functions on tensors.

A conv layer's weight is viewed as a matrix W (C_out x D, D = C_in*k*k). The long-term memory
holds an orthonormal basis B (C_out x r) of the layer's output space, grown only by appending
columns, and each task's coefficients A = B^T W; the task's weight is rebuilt as B A.

The basis is chosen from the layer's pre-BN outputs Z (C_out x N*H*W). We never form Z: its Gram
matrix G = Z Z^T (C_out x C_out, accumulated in float64) has Z's left singular vectors as
eigenvectors and its squared singular values as eigenvalues, which is all the selection needs.
"""

from __future__ import annotations

import torch

__all__ = ["output_gram", "first_basis", "grow_basis", "update_basis", "project", "compose", "residual_share"]

# Eigen-directions whose energy is below this share of ||Z||^2 are numerical noise of the float64
# eigensolver (its error is ~1e-16 * ||G||); those of a residual lie inside span(B) and must never
# be appended. 1e-12 leaves four orders of magnitude of headroom above that noise.
_NOISE_SHARE = 1e-12
# After re-orthogonalisation against the basis, a candidate direction must keep at least this
# much of its unit length to be accepted (Gram-Schmidt's usual "twice is enough" safeguard).
_MIN_KEPT_NORM = 0.5


def output_gram(z: torch.Tensor) -> torch.Tensor:
    """Z Z^T in float64 for a batch of conv outputs ``z`` (N, C, H, W): Z is C x (N*H*W)."""
    zz = z.detach().transpose(0, 1).reshape(z.shape[1], -1).double()
    return zz @ zz.T


def _eig_desc(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (clamped at 0) and eigenvectors of a symmetric PSD matrix, largest first."""
    vals, vecs = torch.linalg.eigh((gram + gram.T) / 2)
    return vals.flip(0).clamp_min(0.0), vecs.flip(1)


def first_basis(gram: torch.Tensor, gamma: float, cap: int | None = None) -> torch.Tensor:
    """Task 0: the fewest leading left singular vectors of Z whose share of ||Z||^2 reaches ``gamma``.

    At least one vector is kept (a layer needs a basis to be rebuilt), at most ``cap``.
    Returns a float32 C_out x r matrix with orthonormal columns.
    """
    vals, vecs = _eig_desc(gram)
    total = float(vals.sum())
    c = gram.shape[0]
    if total <= 0.0:  # the layer produced only zeros: any direction will do
        r = 1
    else:
        cum = torch.cumsum(vals, 0) / total
        r = int((cum < gamma).sum()) + 1  # +1: the vector that reaches gamma is kept
    r = max(1, min(r, c, cap if cap is not None else c))
    return vecs[:, :r].float().contiguous()


def grow_basis(gram: torch.Tensor, basis: torch.Tensor, gamma: float, cap: int | None = None) -> torch.Tensor:
    """Task t > 0: append leading left singular vectors of the residual R = Z - B B^T Z until the
    share of ||Z||^2 explained by the basis reaches ``gamma`` (or the basis reaches ``cap`` / C_out).

    The old columns are returned bit-for-bit as the prefix; new columns are re-orthogonalised
    against them in float64, so the result is orthonormal to float32 precision.
    """
    c, r0 = basis.shape
    limit = min(c, cap if cap is not None else c)
    total = float(torch.trace(gram))
    if r0 >= limit or total <= 0.0:
        return basis
    b64 = basis.double()
    proj = torch.eye(c, dtype=torch.float64, device=gram.device) - b64 @ b64.T
    vals, vecs = _eig_desc(proj @ gram @ proj)
    explained = 1.0 - float(vals.sum()) / total
    accepted: list[torch.Tensor] = []
    for i in range(c):
        if explained >= gamma or r0 + len(accepted) >= limit or float(vals[i]) <= _NOISE_SHARE * total:
            break
        v = vecs[:, i]
        for _ in range(2):  # twice: classical Gram-Schmidt loses orthogonality once, not twice
            v = v - b64 @ (b64.T @ v)
            for u in accepted:
                v = v - u * (u @ v)
        norm = float(v.norm())
        if norm < _MIN_KEPT_NORM:
            continue
        accepted.append(v / norm)
        explained += float(vals[i]) / total
    if not accepted:
        return basis
    new = torch.stack(accepted, 1).float()
    return torch.cat([basis, new], 1).contiguous()


def update_basis(gram: torch.Tensor, basis: torch.Tensor | None, gamma: float, cap: int | None = None) -> torch.Tensor:
    """``first_basis`` when there is no basis yet, else ``grow_basis``."""
    if basis is None or basis.shape[1] == 0:
        return first_basis(gram, gamma, cap)
    return grow_basis(gram, basis, gamma, cap)


def project(weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Coefficients A = B^T W of a conv weight (any shape with C_out first): r x D."""
    return basis.T @ weight.reshape(weight.shape[0], -1)


def compose(basis: torch.Tensor, coeff: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The weight B[:, :r] A of shape ``shape``, r = the coefficients' rows (the basis when they were made)."""
    r = coeff.shape[0]
    b = basis if basis.shape[1] == r else basis[:, :r].contiguous()  # same layout as at projection time
    return (b @ coeff).reshape(shape)


def residual_share(weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """||W - B B^T W||_F^2 / ||W||_F^2: the share of the weight's energy outside span(B), in [0, 1].

    Zero exactly when W lies in the span; scale-free, so every layer weighs the same in the sum.
    """
    w = weight.reshape(weight.shape[0], -1)
    resid = w - basis @ (basis.T @ w)
    return resid.square().sum() / w.square().sum().clamp_min(torch.finfo(w.dtype).tiny)
