"""GUARD-IT direction and redirection (arXiv 2605.12765, METHOD.md Eq. 6-8)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

import kernels


def remove_retain_component(v: torch.Tensor, retain: torch.Tensor) -> torch.Tensor:
    """Eq. 6: v <- v - (v . r) r, with ``retain`` r ``[d_model]`` of unit length."""
    return v - torch.dot(v, retain) * retain


def rescale(v: torch.Tensor, mean_norm: float, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 7: v_hat = mu * v / ||v||."""
    return v * (mean_norm / max(float(v.norm()), eps))


def set_direction(psvs: torch.Tensor, clusters: Sequence[int], retain: torch.Tensor) -> torch.Tensor:
    """Unit direction of one forget set for the open ``clusters``.

    Args:
        psvs: ``[k, d_model]`` prototype steering vectors.
        clusters: indices of the open clusters K(x) (non-empty).
        retain: ``[d_model]`` unit retain direction.

    Returns:
        ``[d_model]`` unit vector: the mean of the open PSVs with the retain component removed.
    """
    v = psvs[list(clusters)].double().mean(dim=0)
    v = remove_retain_component(v, retain.double())
    unit: torch.Tensor = v / v.norm().clamp_min(1e-12)
    return unit


def combine(directions: Sequence[torch.Tensor], scales: Sequence[float]) -> torch.Tensor:
    """One steering vector from several open forget sets (METHOD.md step 8, our documented choice).

    Each set contributes its unit direction u_s and its scale alpha_s * mu_s. The unit directions
    are averaged and re-normalised, and the scale is the mean of the sets' scales, so for a single
    set the result is exactly alpha * v_hat of Eq. 7-8.

    Returns:
        ``[d_model]`` float32 vector to subtract (alpha already folded in).
    """
    u = torch.stack([d.double() for d in directions]).mean(dim=0)
    u = u / u.norm().clamp_min(1e-12)
    scale = sum(scales) / len(scales)
    vector: torch.Tensor = (u * scale).float()
    return vector


def redirect(h: torch.Tensor, v_hat: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 8 on every row of ``h`` ``[..., d_model]``: h' = (h - a v) ||h|| / ||h - a v||."""
    flat = h.reshape(-1, h.shape[-1])  # [tokens, d_model]
    rows = torch.zeros(flat.shape[0], dtype=torch.int32, device=h.device)
    out = kernels.gated_redirect(flat, rows, v_hat.to(h.dtype).unsqueeze(0), alpha)
    return out.view_as(h)
