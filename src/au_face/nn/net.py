"""The AU-aware refinement network: tokens → spatial/temporal transformers → AU logits and Δψ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from au_face.aus import FAST_AUS
from au_face.nn.image_encoder import build_image_encoder
from au_face.nn.smoother import DEFAULT_SIGMAS, AdaptiveSmoother
from au_face.nn.spatial import SpatialTransformer
from au_face.nn.temporal import TemporalTransformer
from au_face.nn.tokenizer import AUTokenizer, masked_time_mean

if TYPE_CHECKING:
    from au_face.geometry import FaceGeometry

Modality = Literal["mesh", "video", "both"]


@dataclass
class NetOutput:
    """``au_logits [B,T,K]``, expression refinement ``delta_expression [B,T,E]`` and the coarse
    meshes after adaptive smoothing ``smoothed [B,T,V,3]`` (the coarse meshes when it is off)."""

    au_logits: torch.Tensor
    delta_expression: torch.Tensor
    smoothed: torch.Tensor


class ExpressionProjector(nn.Module):
    """Fixed linear expression basis ``B [E,V,3]`` with a ridge pseudo-inverse.

    ``project`` gives the coarse expression code of a displacement; ``offsets`` maps Δψ to
    vertex offsets ``B Δψ``.
    """

    basis: torch.Tensor
    pseudo_inverse: torch.Tensor

    def __init__(self, expression_dim: int, num_vertices: int, ridge: float = 1e-3) -> None:
        super().__init__()
        self.ridge = ridge
        self.register_buffer("basis", torch.zeros(expression_dim, num_vertices, 3))
        self.register_buffer("pseudo_inverse", torch.zeros(expression_dim, num_vertices * 3))

    def set_basis(self, basis: torch.Tensor) -> None:
        if tuple(basis.shape) != tuple(self.basis.shape):
            raise ValueError(f"expression basis must be {list(self.basis.shape)}, got {list(basis.shape)}")
        flat = basis.reshape(basis.shape[0], -1).double()
        gram = flat @ flat.t()
        gram += self.ridge * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(len(gram), dtype=gram.dtype)
        self.basis.copy_(basis)
        self.pseudo_inverse.copy_(torch.linalg.solve(gram, flat).float())

    def project(self, displacement: torch.Tensor) -> torch.Tensor:
        """``[...,V,3]`` → ``[...,E]`` least-squares codes."""
        return displacement.flatten(-2) @ self.pseudo_inverse.t()

    def offsets(self, delta: torch.Tensor) -> torch.Tensor:
        """``[...,E]`` → ``[...,V,3]`` vertex offsets."""
        return torch.einsum("...e,evc->...vc", delta, self.basis)


@dataclass
class NetConfig:
    """Architecture of :class:`AUFaceNet` (the sizes that come from the geometry are not here).

    Attributes:
        modality: ``mesh`` (AU tokens + spatial transformer), ``video`` (image features) or ``both``.
        dim, token_hidden: token width and tokenizer MLP width. spatial_layers, temporal_layers, heads,
            dropout: the transformers (0 layers: that transformer is left out, an ablation).
        image_encoder, image_size: the video branch on face crops; feature_dim: per-frame features
            of that size instead of crops.
        smoothing_sigmas: σ (frames) of the adaptive smoother's filtered copies; empty: no smoother.
        fast_max_sigma: the widest σ the regions of :data:`~au_face.aus.FAST_AUS` may mix (the lips
            in speech and the blink move within a few frames); None: every σ.
        expression_correction: add ``B Δψ``; au_masks: False gives every token the whole face (ablation).
    """

    modality: Modality = "both"
    dim: int = 64
    token_hidden: int = 128
    spatial_layers: int = 2
    temporal_layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    image_encoder: str = "small_cnn"
    image_size: int = 64
    feature_dim: int | None = None
    smoothing_sigmas: tuple[float, ...] = DEFAULT_SIGMAS
    fast_max_sigma: float | None = None
    expression_correction: bool = True
    au_masks: bool = True


class AUFaceNet(nn.Module):
    """Pure-torch model of the paper.

    Modalities (supplement Table 1): ``mesh`` (T^S: AU tokens + spatial transformer, temporal
    transformer over pooled mesh features), ``video`` (T^t: temporal transformer over image
    features), ``both``.

    Refinement: ``smoothed + B Δψ`` where ``smoothed`` mixes temporally filtered copies of the
    coarse meshes per frame and AU region (:class:`~au_face.nn.smoother.AdaptiveSmoother`, chosen
    by the AU states; ``smoothing_sigmas=()`` turns it off) and ``B Δψ`` corrects the expression
    (``expression_correction=False``: Δψ = 0, the output moves only where the input moved).
    ``au_masks=False`` replaces the AU vertex masks of the tokens by the whole face (ablation).
    """

    def __init__(
        self,
        num_aus: int,
        num_vertices: int,
        expression_dim: int,
        config: NetConfig | None = None,
        vertex_scale: float = 1.0,
    ) -> None:
        super().__init__()
        config = config if config is not None else NetConfig()
        modality, dim, heads, dropout = config.modality, config.dim, config.heads, config.dropout
        feature_dim, smoothing_sigmas = config.feature_dim, config.smoothing_sigmas
        if modality not in ("mesh", "video", "both"):
            raise ValueError(f"modality must be mesh, video or both, got {modality!r}")
        self.modality = modality
        self.au_masks = config.au_masks
        self.uses_mesh = modality in ("mesh", "both")
        self.uses_video = modality in ("video", "both")
        self.expression = ExpressionProjector(expression_dim, num_vertices)
        frame_inputs = 0
        if self.uses_mesh:
            self.tokenizer = AUTokenizer(num_aus, num_vertices, dim, config.token_hidden, vertex_scale)
            self.spatial = SpatialTransformer(num_aus, dim, config.spatial_layers, heads, dropout)
            self.mesh_frame = nn.Sequential(nn.Linear(dim + expression_dim, dim), nn.GELU(), nn.Linear(dim, dim))
            frame_inputs += dim
        self.video_from_features = bool(feature_dim)
        if self.uses_video:
            self.video_frame: nn.Module
            if feature_dim:
                self.video_frame = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, dim))
            else:
                self.video_frame = build_image_encoder(config.image_encoder, dim, config.image_size)
            self.video_relative = nn.Linear(2 * dim, dim)
            frame_inputs += dim
        self.fuse = nn.Linear(frame_inputs, dim)
        self.temporal = TemporalTransformer(dim, config.temporal_layers, heads, dropout)
        self.au_embedding = nn.Parameter(torch.zeros(num_aus, dim))
        nn.init.normal_(self.au_embedding, std=0.02)
        self.au_mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.au_weight = nn.Parameter(torch.zeros(num_aus, dim))
        self.au_bias = nn.Parameter(torch.zeros(num_aus))
        nn.init.normal_(self.au_weight, std=dim**-0.5)
        self.expression_head: nn.Sequential | None = None
        if config.expression_correction:
            head_in = nn.Linear(2 * dim + expression_dim, 2 * dim)
            head_out = nn.Linear(2 * dim, expression_dim)
            nn.init.zeros_(head_out.weight)
            nn.init.zeros_(head_out.bias)
            self.expression_head = nn.Sequential(nn.LayerNorm(2 * dim + expression_dim), head_in, nn.GELU(), head_out)
        self.smoother = (
            AdaptiveSmoother(num_aus, num_vertices, dim, tuple(smoothing_sigmas)) if smoothing_sigmas else None
        )

    #: parameter-name prefixes that depend on the AU list (re-initialised when it changes)
    AU_SPECIFIC = (
        "au_embedding",
        "au_weight",
        "au_bias",
        "spatial.au_embedding",
        "tokenizer.masks",
        "smoother.au_mix",
        "smoother.regions",
    )

    @classmethod
    def from_geometry(cls, geometry: FaceGeometry, config: NetConfig | None = None) -> AUFaceNet:
        """A network sized for ``geometry`` with its masks and basis installed."""
        net = cls(len(geometry.aus), geometry.num_vertices, geometry.expression_dim, config, geometry.vertex_scale)
        net.set_geometry(torch.as_tensor(geometry.masks), torch.as_tensor(geometry.basis))
        if net.smoother is not None and config is not None and config.fast_max_sigma is not None:
            fast = [k for k, au in enumerate(geometry.aus) if au in FAST_AUS]
            net.smoother.limit(fast, config.fast_max_sigma)
        return net

    def set_geometry(self, masks: torch.Tensor, basis: torch.Tensor) -> None:
        """Install the fixed AU masks ``[K,V]`` and expression basis ``[E,V,3]``."""
        if self.uses_mesh:  # au_masks=False (ablation): every token sees the whole face
            self.tokenizer.set_masks(masks if self.au_masks else torch.ones_like(masks))
        if self.smoother is not None:
            self.smoother.set_masks(masks)
        self.expression.set_basis(basis)

    def forward(
        self,
        vertices: torch.Tensor,
        valid: torch.Tensor,
        reference: torch.Tensor | None = None,
        crops: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> NetOutput:
        """Vertices ``[B,T,V,3]``, valid ``[B,T]``, S̄ ``[B,V,3]``, crops ``[B,T,3,H,W]`` or features ``[B,T,F]``."""
        b, t = valid.shape
        if reference is None:
            reference = masked_time_mean(vertices, valid)
        codes = self.expression.project(vertices - reference[:, None]) * valid[..., None]
        frame_parts = []
        au_state = self.au_embedding.expand(b, t, -1, -1)
        if self.uses_mesh:
            tokens = self.spatial(self.tokenizer(vertices, valid, reference))
            au_state = au_state + tokens
            frame_parts.append(self.mesh_frame(torch.cat([tokens.mean(dim=2), codes], dim=-1)))
        if self.uses_video:
            video = self._video_features(crops, features, b, t)
            # like S_j − S̄ for meshes: each frame's features relative to the clip's valid-frame mean
            relative = video - masked_time_mean(video, valid)[:, None]
            frame_parts.append(self.video_relative(torch.cat([video, relative], dim=-1)))
        context = self.temporal(self.fuse(torch.cat(frame_parts, dim=-1)), valid)
        au_state = self.au_mlp(au_state + context[:, :, None])
        au_logits = (au_state * self.au_weight).sum(-1) + self.au_bias
        if self.expression_head is None:
            delta = codes.new_zeros(codes.shape)
        else:
            delta = self.expression_head(torch.cat([context, au_state.mean(dim=2), codes], dim=-1))
        smoothed = vertices if self.smoother is None else self.smoother(vertices, valid, au_state, context)
        return NetOutput(au_logits, delta, smoothed)

    def _video_features(
        self, crops: torch.Tensor | None, features: torch.Tensor | None, b: int, t: int
    ) -> torch.Tensor:
        if self.video_from_features:
            if features is None:
                raise ValueError("this model's video branch needs per-frame features [B,T,F]; the batch has none")
            return self.video_frame(features)
        if crops is None:
            raise ValueError("this model's video branch needs face crops [B,T,3,H,W]; the batch has none")
        return self.video_frame(crops.flatten(0, 1)).reshape(b, t, -1)
