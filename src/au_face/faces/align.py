"""Least-squares similarity alignment of point sets (Umeyama 1991, reflections excluded)."""

from __future__ import annotations

import numpy as np


def similarity_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched fit: ``scale [B]``, ``rotation [B,3,3]``, ``translation [B,3]`` minimising
    ``|scale * source @ rotation.T + translation - target[b]|`` for ``source [N,3]``, ``target [B,N,3]``."""
    mu_s = source.mean(axis=0)
    mu_t = target.mean(axis=1, keepdims=True)
    src = source - mu_s
    tgt = target - mu_t
    cov = np.einsum("bni,nj->bij", tgt, src) / len(source)
    u, d, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u @ vt))
    sign[sign == 0] = 1.0
    fix = np.ones((len(target), 3))
    fix[:, 2] = sign
    rotation = u @ (fix[:, :, None] * vt)
    scale = (d * fix).sum(axis=1) / (src**2).sum(axis=1).mean()
    translation = mu_t[:, 0] - scale[:, None] * np.einsum("bij,j->bi", rotation, mu_s)
    return scale, rotation, translation


def similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``s, R, t`` with ``target ≈ s R source + t`` for two ``[N,3]`` point sets."""
    scale, rotation, translation = similarity_fit(source, target[None])
    return float(scale[0]), rotation[0], translation[0]


def similarity_residual(
    source: np.ndarray, target: np.ndarray, scale: np.ndarray, rotation: np.ndarray, translation: np.ndarray
) -> np.ndarray:
    """RMS distance ``[B]`` between the fitted ``source`` and each ``target[b]``, in ``source`` units
    (the image-space distance divided by ``scale``), for a fit from :func:`similarity_fit`."""
    fitted = scale[:, None, None] * np.einsum("bij,nj->bni", rotation, source) + translation[:, None]
    return np.sqrt(((fitted - target) ** 2).sum(axis=-1).mean(axis=-1)) / scale
