"""Linear expression bases ``B [E,V,3]`` used by the refinement ``S_j + B Δψ_j``."""

from __future__ import annotations

import numpy as np

from au_face.faces.ict import ICTFaceModel


def ict_expression_basis(model: ICTFaceModel, min_norm: float = 1e-4) -> tuple[np.ndarray, list[str]]:
    """ICT blendshapes on the model's vertices; shapes that do not move this region are dropped."""
    norms = np.linalg.norm(model.expression_deltas.reshape(len(model.expression_names), -1), axis=1)
    keep = np.flatnonzero(norms > min_norm)
    return model.expression_deltas[keep].astype(np.float32), [model.expression_names[i] for i in keep]


def fit_pca_basis(displacements: np.ndarray, num_components: int) -> np.ndarray:
    """PCA basis of displacements ``[N,V,3]`` (meshes minus their S̄), scaled to one standard deviation.

    A code of 1 along component e moves the mesh by one training standard deviation.
    """
    n = displacements.shape[0]
    if n < 2:
        raise ValueError("a PCA expression basis needs at least two training meshes")
    flat = displacements.reshape(n, -1).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    _, singular, components = np.linalg.svd(flat, full_matrices=False)
    k = min(num_components, len(singular))
    scaled = components[:k] * (singular[:k, None] / np.sqrt(n - 1))
    if k < num_components:
        scaled = np.concatenate([scaled, np.zeros((num_components - k, flat.shape[1]))])
    return scaled.reshape(num_components, -1, 3).astype(np.float32)
