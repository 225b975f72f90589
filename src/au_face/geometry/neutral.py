"""The person's neutral (expression-free) shape S̄, estimated from coarse frames alone.

Tokens and features use ``S_j − S̄``. With S̄ the clip mean, an expression held for a whole clip
(or a single image) cancels out and a frame's reading depends on its neighbours. Here every frame
is fitted as

    S_j ≈ T + I α + E w_j,    w_j ∈ [0, 1],

with ``T`` a template, ``I`` identity modes shared by all frames (ridge prior), and ``E`` expression
shapes with non-negative, sparse weights per frame (gaze shapes left out: they move the eyes, not
the face). S̄ is then the mean over frames of ``S_j − E w_j``: the expression is taken away and
whatever the models cannot express (the reconstructor's own shape details) stays in S̄, so for a
single image ``S − S̄ = E w`` exactly. Long videos are fitted on at most ``max_frames`` evenly spaced
frames, so memory and time stay flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: ICT expression shapes left out of the neutral fit (gaze: they absorb fitting error, not expression).
GAZE_SHAPE_PREFIX = "eyeLook"


@dataclass
class NeutralFit:
    """``reference [V,3]`` (S̄) and the fitted identity coefficients ``identity [I]``."""

    reference: torch.Tensor
    identity: torch.Tensor


class NeutralEstimator(nn.Module):
    """Fits S̄ (see the module docstring). Pure tensor code, stored as buffers in checkpoints.

    Args:
        template: ``[V,3]`` mean shape ``T``.
        identity: ``[I,V,3]`` identity modes (one unit = one prior standard deviation).
        expression: ``[E,V,3]`` expression shapes at full activation.
        identity_ridge: prior weight on ``|α|²`` (squared vertex units).
        sparsity: cost per unit of expression weight (squared vertex units), against spurious shapes.
        iterations, inner_iterations: alternations of the identity and expression steps, and
            projected-gradient steps per expression step.
        max_frames: frames the fit uses at most (evenly spaced).
    """

    template: torch.Tensor
    identity: torch.Tensor
    expression: torch.Tensor

    def __init__(
        self,
        template: torch.Tensor,
        identity: torch.Tensor,
        expression: torch.Tensor,
        identity_ridge: float = 0.05,
        sparsity: float = 0.1,
        iterations: int = 6,
        inner_iterations: int = 30,
        max_frames: int = 256,
    ) -> None:
        super().__init__()
        self.register_buffer("template", torch.as_tensor(template, dtype=torch.float32).clone())
        self.register_buffer("identity", torch.as_tensor(identity, dtype=torch.float32).clone())
        self.register_buffer("expression", torch.as_tensor(expression, dtype=torch.float32).clone())
        self.identity_ridge, self.sparsity = float(identity_ridge), float(sparsity)
        self.iterations, self.inner_iterations, self.max_frames = (
            int(iterations),
            int(inner_iterations),
            int(max_frames),
        )

    @classmethod
    def empty(cls, num_vertices: int) -> NeutralEstimator:
        """An estimator without shapes, to be filled by :meth:`install` or ``load_state_dict``."""
        return cls(torch.zeros(num_vertices, 3), torch.zeros(0, num_vertices, 3), torch.zeros(0, num_vertices, 3))

    def install(self, other: NeutralEstimator) -> None:
        """Take ``other``'s shapes and settings."""
        for name in ("template", "identity", "expression"):
            setattr(self, name, getattr(other, name).detach().clone().to(self.template.device))
        self.identity_ridge, self.sparsity = other.identity_ridge, other.sparsity
        self.iterations, self.inner_iterations, self.max_frames = (
            other.iterations,
            other.inner_iterations,
            other.max_frames,
        )

    @property
    def is_empty(self) -> bool:
        return self.expression.shape[0] == 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("template", "identity", "expression"):  # the shapes come with the checkpoint
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_vertices(self) -> int:
        return int(self.template.shape[0])

    def _matrices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """``E [3V,E]``, ``I [3V,I]``, ``EᵀE`` and the step bound ``|E|²``, computed once per set of
        shapes (the data loader fits S̄ for every single-frame item)."""
        key = (self.expression.data_ptr(), self.identity.data_ptr(), self.expression.device)
        if getattr(self, "_cached", (None,))[0] != key:
            e = self.expression.flatten(1).t()
            i = self.identity.flatten(1).t()
            lipschitz = float(torch.linalg.matrix_norm(e, ord=2) ** 2) if e.numel() else 1.0
            self._cached = (key, (e, i, e.t() @ e, max(lipschitz, 1e-12)))
        return self._cached[1]

    @torch.no_grad()
    def fit(self, vertices: torch.Tensor, valid: torch.Tensor | None = None) -> NeutralFit:
        """Fit ``vertices [T,V,3]`` (canonical frames) over the ``valid [T]`` ones."""
        vertices, valid = self._inputs(vertices, valid)
        identity = vertices.new_zeros(self.identity.shape[0])
        used = self._spaced_frames(valid)
        if len(used) == 0:
            return NeutralFit(self.template.clone(), identity)
        e, i, _, _ = self._matrices()
        offsets = (vertices[used] - self.template).flatten(1)  # [N,3V]
        gram = len(used) * (i.t() @ i) + self.identity_ridge * torch.eye(i.shape[1], device=i.device)
        w = offsets.new_zeros(len(used), e.shape[1])
        for _ in range(self.iterations):
            w = self._expression_step(offsets - (i @ identity), w)
            identity = torch.linalg.solve(gram, i.t() @ (offsets - w @ e.t()).sum(0))
        reference = (vertices[used].flatten(1) - w @ e.t()).mean(0).reshape(-1, 3)
        return NeutralFit(reference, identity)

    @torch.no_grad()
    def fit_each(self, vertices: torch.Tensor) -> torch.Tensor:
        """S̄ ``[N,V,3]`` of each of ``vertices [N,V,3]`` on its own (unrelated photos): what :meth:`fit`
        gives every frame alone, with the N problems solved together."""
        vertices = vertices.float().to(self.template.device)
        e, i, _, _ = self._matrices()
        offsets = (vertices - self.template).flatten(1)  # [N,3V]
        gram = i.t() @ i + self.identity_ridge * torch.eye(i.shape[1], device=i.device)
        identity = offsets.new_zeros(len(offsets), i.shape[1])
        w = offsets.new_zeros(len(offsets), e.shape[1])
        for _ in range(self.iterations):
            w = self._expression_step(offsets - identity @ i.t(), w)
            identity = torch.linalg.solve(gram, i.t() @ (offsets - w @ e.t()).t()).t()
        return (vertices.flatten(1) - w @ e.t()).reshape(vertices.shape)

    @torch.no_grad()
    def median_reference(self, vertices: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """S̄ ``[V,3]`` of a real video's frames ``[T,V,3]``: the per-coordinate median of the S̄ that each of
        its ``valid`` frames (at most ``max_frames``, evenly spaced) gets on its own (:meth:`fit_each`).

        :meth:`fit` weighs its identity prior once for all frames, so the more frames, the more of a
        real face the identity modes take up (they span a synthetic ICT face, not a real one), and a
        face held still for many frames gets another S̄ than the same face in one photo. Each frame
        fitted alone gets the S̄ a photo gets, whatever the video's length; the median keeps a held
        or passing expression out of it. The template where no frame is valid."""
        vertices, valid = self._inputs(vertices, valid)
        used = self._spaced_frames(valid)
        if len(used) == 0:
            return self.template.clone()
        # (of an even count, the mean of the middle two, as NumPy's median)
        return torch.quantile(self.fit_each(vertices[used]), 0.5, dim=0)

    def _spaced_frames(self, valid: torch.Tensor) -> torch.Tensor:
        """The indices of at most :attr:`max_frames` evenly spaced ``valid`` frames (what a fit uses)."""
        frames = torch.nonzero(valid).flatten()
        if len(frames) == 0:
            return frames
        return frames[torch.linspace(0, len(frames) - 1, min(len(frames), self.max_frames)).round().long().unique()]

    @torch.no_grad()
    def expression_weights(
        self, vertices: torch.Tensor, valid: torch.Tensor | None, identity: torch.Tensor
    ) -> torch.Tensor:
        """``[T,E]`` expression weights of every frame given the fitted ``identity`` (zeros where not
        valid); what the analytic readout maps to AUs."""
        vertices, valid = self._inputs(vertices, valid)
        weights = vertices.new_zeros(len(vertices), self.expression.shape[0])
        _, i, _, _ = self._matrices()
        weights[valid] = self._expression_step((vertices[valid] - self.template).flatten(1) - (i @ identity.to(i)))
        return weights

    def _inputs(self, vertices: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        vertices = vertices.float().to(self.template.device)
        valid = torch.ones(len(vertices), dtype=torch.bool) if valid is None else valid.bool()
        return vertices, valid.to(self.template.device)

    def _expression_step(self, residual: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """Accelerated projected gradient (FISTA) for ``min ½|r − E w|² + sparsity·Σw`` over
        ``w ∈ [0,1]``, one problem per row of ``residual [N,3V]``."""
        e, _, gram, lipschitz = self._matrices()
        w = residual.new_zeros(len(residual), e.shape[1]) if start is None else start
        target = residual @ e
        y, step = w, 1.0
        for _ in range(self.inner_iterations):
            w_next = (y - (y @ gram - target + self.sparsity) / lipschitz).clamp(0.0, 1.0)
            step_next = (1 + (1 + 4 * step * step) ** 0.5) / 2
            y = w_next + ((step - 1) / step_next) * (w_next - w)
            w, step = w_next, step_next
        return w

    def forward(self, vertices: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """S̄ ``[V,3]`` of one sequence's frames ``[T,V,3]`` by the joint :meth:`fit` (the training data's
        S̄; a video at inference gets :meth:`median_reference`)."""
        return self.fit(vertices, valid).reference


def fit_shape_indices(names: list[str]) -> np.ndarray:
    """Indices of the expression shapes the neutral fit uses (all but gaze)."""
    return np.array([k for k, name in enumerate(names) if not name.startswith(GAZE_SHAPE_PREFIX)], dtype=np.int64)


__all__ = ["GAZE_SHAPE_PREFIX", "NeutralEstimator", "NeutralFit", "fit_shape_indices"]
