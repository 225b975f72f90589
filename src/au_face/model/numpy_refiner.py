"""The trained refiner's inference in NumPy alone, so that ``au-face reconstruct`` never imports torch.

Importing torch costs 3–4 s of CPU on a 2-core machine, more than the whole refinement of a
clip; the refiner process of :mod:`au_face.inference.process` pays it on the core that also
draws the overlay. :class:`NumpyRefiner` runs the same network as
:class:`~au_face.model.refiner.AUFaceRefiner` (mesh modality: AU tokens, spatial and temporal
transformers, AU heads, adaptive smoother, expression correction, neutral-shape fit) from the
arrays :func:`export_arrays` takes out of it, in float32; ``tests/test_numpy_refiner.py`` holds
it to the torch model within float tolerance on the packaged model and on small models that
switch each part on or off.

A checkpoint is exported once, with torch, into the user cache (keyed by the checkpoint's bytes
and :data:`EXPORT_VERSION`); later runs read only that file (:func:`load_array_refiner`). Models
with a video branch (image encoder) are not exported: they run in torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from au_face.errors import APPEARANCE_MISSING, AppearanceMissingWarning, AUFaceError
from au_face.model.exclusions import rule_out
from au_face.utils.files import atomic_save_npz, user_cache_dir

if TYPE_CHECKING:
    from au_face.model.refiner import AUFaceRefiner

#: Changes whenever the exported arrays or their meaning change (old cache files are then ignored).
EXPORT_VERSION = 4  # 2: an optional appearance head; 3: the copies each smoother region may mix; 4: mesh exclusions
#: ``nn.LayerNorm``'s default epsilon, which every layer norm of the network uses.
_NORM_EPS = 1e-5


class NotExportableError(AUFaceError, ValueError):
    """A model that the NumPy refiner cannot run (a video branch): it runs in torch."""


def export_arrays(refiner: AUFaceRefiner) -> dict[str, np.ndarray]:
    """Everything :class:`NumpyRefiner` needs from ``refiner``: its weights and buffers (``net.*``,
    ``neutral.*``, ``pos_weight``) as float32 arrays and its settings as a JSON string (``settings``).
    :class:`NotExportableError` for a model with a video branch."""
    config = refiner.net_config
    if refiner.net.uses_video:
        raise NotExportableError(f"modality={config.modality!r} has an image encoder; only modality='mesh' is exported")
    neutral = refiner.neutral
    lipschitz = neutral._matrices()[3] if not neutral.is_empty else 1.0
    settings = {
        "version": EXPORT_VERSION,
        "aus": [int(a) for a in refiner.aus],
        "topology": refiner.topology_name,
        "clip_length": int(refiner.clip_length),
        "vertex_scale": float(refiner.net.tokenizer.scale),
        "reference": refiner.reference_mode,
        "calibrated": bool(refiner.calibrated),
        "lip_press_rule": refiner.lip_press_exclusion,
        "heads": int(config.heads),
        "spatial_layers": int(config.spatial_layers),
        "temporal_layers": int(config.temporal_layers),
        "smoothing_sigmas": [float(s) for s in config.smoothing_sigmas],
        "smoothing_allowed": [] if refiner.net.smoother is None else refiner.net.smoother.allowed.tolist(),
        "expression_correction": refiner.net.expression_head is not None,
        "neutral": {
            "identity_ridge": neutral.identity_ridge,
            "sparsity": neutral.sparsity,
            "iterations": neutral.iterations,
            "inner_iterations": neutral.inner_iterations,
            "max_frames": neutral.max_frames,
            "lipschitz": float(lipschitz),
        },
    }
    arrays = {name: value.detach().float().cpu().numpy() for name, value in refiner.state_dict().items()}
    return {**arrays, "settings": np.asarray(json.dumps(settings))}


class NumpyRefiner:
    """:class:`~au_face.model.refiner.AUFaceRefiner`'s inference on NumPy arrays (see the module docstring).

    It is an :class:`~au_face.inference.passes.ArrayRefiner`: ``fit_reference`` (S̄ of frames),
    ``refine_windows`` (clips of equal length, one S̄) and ``refine_each`` (unrelated photos).
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        settings = json.loads(str(arrays["settings"]))
        if settings.get("version") != EXPORT_VERSION:
            raise NotExportableError(f"exported refiner version {settings.get('version')}, expected {EXPORT_VERSION}")
        self._p = {name: np.asarray(value, dtype=np.float32) for name, value in arrays.items() if name != "settings"}
        self.aus: list[int] = settings["aus"]
        self.topology_name: str = settings["topology"]
        self.clip_length: int = settings["clip_length"]
        #: the optional per-frame fields it reads: appearance descriptors for an appearance head (never a video branch)
        self.frame_inputs: tuple[str, ...] = ("appearance",) if "appearance.weight" in self._p else ()
        self._settings = settings
        rule = settings["lip_press_rule"]
        self._lip_press_rule = None if rule is None else (int(rule[0]), [int(i) for i in rule[1]])
        #: the copies each smoother region may mix (``[K+1,S]``; AdaptiveSmoother.allowed)
        self._smoothing_allowed = np.asarray(settings["smoothing_allowed"], dtype=bool)
        masks, first = self._p["net.tokenizer.masks"], self._p["net.tokenizer.first"]
        # the tokenizer's first layer on each AU's masked displacement (AUTokenizer.forward), restricted to
        # the coordinates its mask covers: a fifth of the face for the packaged model's masks
        self._token_inputs = [np.flatnonzero(np.repeat(mask > 0, 3)) for mask in masks]
        self._token_weights = [
            np.ascontiguousarray((mask[:, None] * first).reshape(len(first), -1)[:, inputs].T)
            for mask, inputs in zip(masks, self._token_inputs)
        ]
        self._expression = _columns(self._p["neutral.expression"])  # E [3V, E]
        self._identity = _columns(self._p["neutral.identity"])  # I [3V, I]
        self._expression_gram = self._expression.T @ self._expression

    @classmethod
    def from_refiner(cls, refiner: AUFaceRefiner) -> NumpyRefiner:
        """The NumPy twin of a loaded torch refiner."""
        return cls(export_arrays(refiner))

    @classmethod
    def load(cls, path: str | Path) -> NumpyRefiner:
        """A refiner exported to ``path`` (an npz of :func:`export_arrays`, as :func:`load_array_refiner` caches them)."""
        with np.load(path) as stored:
            return cls({name: stored[name] for name in stored.files})

    # -- S̄ ------------------------------------------------------------------------------------
    def fit_reference(self, vertices: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """S̄ ``[V,3]`` of frames ``[T,V,3]`` (their ``valid [T]`` ones), as :meth:`AUFaceRefiner.reference`."""
        vertices = np.asarray(vertices, dtype=np.float32)
        valid = np.asarray(valid, dtype=bool)
        if self._settings["reference"] == "mean":
            return vertices[valid].mean(axis=0) if valid.any() else np.zeros_like(vertices[0])
        return self._neutral_fit(vertices, valid)

    def _neutral_fit(self, vertices: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """:meth:`NeutralEstimator.median_reference <au_face.geometry.neutral.NeutralEstimator.median_reference>`."""
        frames = np.flatnonzero(valid)
        if len(frames) == 0:
            return self._p["neutral.template"].copy()
        spaced = np.linspace(
            0, len(frames) - 1, min(len(frames), self._settings["neutral"]["max_frames"]), dtype=np.float32
        )
        used = frames[np.unique(spaced.round().astype(np.int64))]
        return np.median(self._neutral_fit_each(vertices[used]), axis=0)

    def _neutral_fit_each(self, vertices: np.ndarray) -> np.ndarray:
        """:meth:`NeutralEstimator.fit_each <au_face.geometry.neutral.NeutralEstimator.fit_each>`."""
        options = self._settings["neutral"]
        e, i = self._expression, self._identity
        offsets = (vertices - self._p["neutral.template"]).reshape(len(vertices), -1)
        gram = i.T @ i + options["identity_ridge"] * np.eye(i.shape[1], dtype=np.float32)
        identity = np.zeros((len(offsets), i.shape[1]), dtype=np.float32)
        w = np.zeros((len(offsets), e.shape[1]), dtype=np.float32)
        for _ in range(options["iterations"]):
            w = self._expression_step(offsets - identity @ i.T, w)
            identity = np.linalg.solve(gram, i.T @ (offsets - w @ e.T).T).T.astype(np.float32)
        return (vertices.reshape(len(vertices), -1) - w @ e.T).reshape(vertices.shape)

    def _expression_step(self, residual: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The neutral fit's accelerated projected gradient on the expression weights."""
        options = self._settings["neutral"]
        target = residual @ self._expression
        y, step = w, 1.0
        for _ in range(options["inner_iterations"]):
            w_next = np.clip(
                y - (y @ self._expression_gram - target + options["sparsity"]) / options["lipschitz"], 0, 1
            )
            step_next = (1 + (1 + 4 * step * step) ** 0.5) / 2
            y = w_next + np.float32((step - 1) / step_next) * (w_next - w)
            w, step = w_next, step_next
        return w

    # -- refinement ----------------------------------------------------------------------------
    def refine_windows(self, frames: dict[str, np.ndarray], reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clips ``frames["vertices"] [B,T,V,3]``, ``frames["valid"] [B,T]`` refined with one S̄ ``[V,3]``:
        refined vertices ``[B,T,V,3]`` (coarse where there is no face) and AU probabilities ``[B,T,K]``."""
        vertices = np.asarray(frames["vertices"], dtype=np.float32)
        valid = np.asarray(frames["valid"], dtype=bool)
        references = np.broadcast_to(np.asarray(reference, dtype=np.float32), (len(vertices), *vertices.shape[2:]))
        return self._forward(vertices, valid, references, frames.get("appearance"))

    def refine_each(self, frames: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each of ``frames["vertices"] [N,V,3]`` alone, as an unrelated photo: its S̄ ``[N,V,3]`` (the
        coarse mesh where there is no face), refined vertices and AU probabilities ``[N,K]``, as
        :meth:`AUFaceRefiner.refine_photos`."""
        vertices = np.asarray(frames["vertices"], dtype=np.float32)
        valid = np.asarray(frames["valid"], dtype=bool)
        references = vertices.copy()
        if self._settings["reference"] == "neutral" and valid.any():
            references[valid] = self._neutral_fit_each(vertices[valid])
        appearance = frames.get("appearance")
        refined, probs = self._forward(
            vertices[:, None], valid[:, None], references, None if appearance is None else appearance[:, None]
        )
        return references, refined[:, 0], probs[:, 0]

    def _forward(
        self, vertices: np.ndarray, valid: np.ndarray, references: np.ndarray, appearance: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`AUFaceRefiner.forward` (mesh modality): vertices ``[B,T,V,3]``, valid ``[B,T]``, S̄ ``[B,V,3]``,
        appearance descriptors ``[B,T,D]`` if any."""
        p, settings = self._p, self._settings
        b, t, v, _ = vertices.shape
        mask = valid[..., None, None].astype(np.float32)
        displacement = (vertices - references[:, None]) * mask  # [B,T,V,3]
        flat = displacement.reshape(b * t, v * 3)
        codes = (flat @ p["net.expression.pseudo_inverse"].T).reshape(b, t, -1)
        # AU tokens (AUTokenizer), then the spatial transformer over them
        scaled = flat / np.float32(settings["vertex_scale"])
        hidden = np.stack([scaled[:, i] @ w for i, w in zip(self._token_inputs, self._token_weights)], axis=1)
        hidden = _gelu(hidden.reshape(b, t, len(self.aus), -1) + p["net.tokenizer.first_bias"])
        tokens = _linear(hidden, p, "net.tokenizer.rest.1") + p["net.spatial.au_embedding"]
        tokens = self._encoder(
            tokens.reshape(b * t, len(self.aus), -1), "net.spatial.encoder", settings["spatial_layers"]
        )
        tokens = tokens.reshape(b, t, len(self.aus), -1)
        frame = np.concatenate([tokens.mean(axis=2), codes], axis=-1)
        frame = _linear(_gelu(_linear(frame, p, "net.mesh_frame.0")), p, "net.mesh_frame.2")
        context = self._temporal(_linear(frame, p, "net.fuse"), valid)
        au_state = p["net.au_embedding"] + tokens + context[:, :, None]
        au_state = _gelu(_linear(_layer_norm(au_state, p, "net.au_mlp.0"), p, "net.au_mlp.1"))
        logits = (au_state * p["net.au_weight"]).sum(-1) + p["net.au_bias"]
        smoothed = vertices
        if settings["smoothing_sigmas"]:
            smoothed = self._smooth(vertices, valid, au_state, context)
        if settings["expression_correction"]:
            head = np.concatenate([context, au_state.mean(axis=2), codes], axis=-1)
            head = _layer_norm(head, p, "net.expression_head.0")
            delta = _linear(_gelu(_linear(head, p, "net.expression_head.1")), p, "net.expression_head.3")
            smoothed = smoothed + np.einsum("bte,evc->btvc", delta, p["net.expression.basis"])
        refined = np.where(valid[..., None, None], smoothed, vertices).astype(np.float32)
        if appearance is None and "appearance.weight" in p:
            warnings.warn(APPEARANCE_MISSING, AppearanceMissingWarning, stacklevel=3)
        elif appearance is not None and "appearance.weight" in p:
            dim, appearance = len(p["appearance.mean"]), np.asarray(appearance)
            if appearance.shape[-1] < dim:
                raise ValueError(
                    f"appearance descriptors of length {appearance.shape[-1]}, but the head reads {dim}: they "
                    "were made by an older au_face; compute them again (au-face preprocess --appearance)"
                )
            appearance = np.asarray(appearance[..., :dim], dtype=np.float32)
            with np.errstate(invalid="ignore"):
                standard = (appearance - p["appearance.mean"]) / p["appearance.scale"]
            standard = np.where(np.isfinite(standard), standard, np.float32(0))
            for (start, stop), limit in zip(p.get("appearance.part_bounds", ()), p.get("appearance.part_limits", ())):
                part = standard[..., int(start) : int(stop)]
                unusual = np.sqrt(np.square(part).mean(axis=-1, keepdims=True)) > limit
                standard[..., int(start) : int(stop)] = np.where(unusual, np.float32(0), part)
            offsets = standard @ p["appearance.weight"].T
            logits = logits + np.where(valid[..., None], offsets, np.float32(0))
        if settings["calibrated"]:
            logits = logits - np.log(p["pos_weight"])
        return refined, rule_out(_sigmoid(logits).astype(np.float32), vertices, self._lip_press_rule)

    def _temporal(self, features: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """:class:`~au_face.nn.temporal.TemporalTransformer`: position encoding, masked self-attention, norm."""
        layers = self._settings["temporal_layers"]
        if layers:
            padding = ~valid
            padding = padding & ~padding.all(axis=1, keepdims=True)
            features = features + _sinusoidal_encoding(*features.shape[1:])
            features = self._encoder(features, "net.temporal.encoder", layers, padding)
        return _layer_norm(features, self._p, "net.temporal.norm")

    def _encoder(self, x: np.ndarray, name: str, layers: int, padding: np.ndarray | None = None) -> np.ndarray:
        """``nn.TransformerEncoder`` of pre-norm layers (ReLU feed-forward) over ``x [N,L,D]``;
        ``padding [N,L]`` marks keys never attended to."""
        p = self._p
        for index in range(layers):
            layer = f"{name}.layers.{index}"
            x = x + _attention(
                _layer_norm(x, p, f"{layer}.norm1"), p, f"{layer}.self_attn", self._settings["heads"], padding
            )
            feed = np.maximum(_linear(_layer_norm(x, p, f"{layer}.norm2"), p, f"{layer}.linear1"), 0)
            x = x + _linear(feed, p, f"{layer}.linear2")
        return x

    def _smooth(self, vertices: np.ndarray, valid: np.ndarray, au_state: np.ndarray, context: np.ndarray) -> np.ndarray:
        """:class:`~au_face.nn.smoother.AdaptiveSmoother`: filtered copies mixed per frame and region."""
        p = self._p
        logits = np.concatenate(
            [_linear(au_state, p, "net.smoother.au_mix"), _linear(context, p, "net.smoother.rest_mix")[:, :, None]],
            axis=2,
        )  # [B,T,R,S]
        logits = np.where(self._smoothing_allowed, logits, -np.inf)
        mix = np.swapaxes(_softmax(logits), 2, 3) @ p["net.smoother.regions"]  # [B,T,S,V]
        filtered = _filter_sequences(vertices, valid, tuple(self._settings["smoothing_sigmas"]))  # [B,T,S,V,3]
        return (mix[..., None] * filtered).sum(axis=2)


def _columns(shapes: np.ndarray) -> np.ndarray:
    """``[N,V,3]`` shapes as the columns of a ``[3V,N]`` matrix (N may be 0)."""
    return shapes.reshape(shapes.shape[0], shapes.shape[1] * shapes.shape[2]).T


def _linear(x: np.ndarray, p: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _layer_norm(x: np.ndarray, p: dict[str, np.ndarray], name: str) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(_NORM_EPS)) * p[f"{name}.weight"] + p[f"{name}.bias"]


def _attention(
    x: np.ndarray, p: dict[str, np.ndarray], name: str, heads: int, padding: np.ndarray | None
) -> np.ndarray:
    """``nn.MultiheadAttention`` self-attention over ``x [N,L,D]`` (eval mode)."""
    n, length, dim = x.shape
    qkv = (x @ p[f"{name}.in_proj_weight"].T + p[f"{name}.in_proj_bias"]).reshape(n, length, 3, heads, dim // heads)
    q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each [N,H,L,d]
    scores = (q @ k.transpose(0, 1, 3, 2)) / np.float32(math.sqrt(dim // heads))
    if padding is not None:
        scores = np.where(padding[:, None, None, :], np.float32(-np.inf), scores)
    out = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(n, length, dim)
    return _linear(out, p, f"{name}.out_proj")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function to within 1.5e-7 (Abramowitz & Stegun 7.1.26): NumPy has none, and SciPy's
    import costs more than the refinement of a clip."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(x.dtype)


def _gelu(x: np.ndarray) -> np.ndarray:
    """``nn.GELU()`` (the exact, erf form)."""
    return 0.5 * x * (1.0 + _erf(x * np.float32(1 / math.sqrt(2))))


def _sinusoidal_encoding(length: int, dim: int) -> np.ndarray:
    """:func:`au_face.nn.temporal.sinusoidal_encoding`."""
    position = np.arange(length, dtype=np.float32)[:, None]
    freq = np.exp(np.arange(0, dim, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / dim))
    encoding = np.zeros((length, dim), dtype=np.float32)
    encoding[:, 0::2] = np.sin(position * freq)
    encoding[:, 1::2] = np.cos(position * freq[: dim // 2])
    return encoding


def _filter_sequences(vertices: np.ndarray, valid: np.ndarray, sigmas: tuple[float, ...]) -> np.ndarray:
    """:func:`au_face.nn.smoother.filter_sequences` (normalised Gaussian filtering over time) → ``[B,T,S,V,3]``."""
    b, t, v, c = vertices.shape
    radius = max(1, math.ceil(3 * max(sigmas)))
    offsets = np.arange(t)[None, :] - np.arange(t)[:, None]  # [T_out, T_in]: input frame minus output frame
    taps = np.stack([_gaussian(s, offsets) * (np.abs(offsets) <= radius) for s in sigmas]).astype(np.float32)
    weight = valid.astype(np.float32)  # [B,T]
    signal = (vertices * weight[..., None, None]).reshape(b, 1, t, v * c)
    numerator = (taps @ signal).reshape(b, len(sigmas), t, v, c).transpose(0, 2, 1, 3, 4)  # [B,T,S,V,3]
    denominator = np.einsum("sij,bj->bis", taps, weight)[..., None, None]
    return numerator / np.maximum(denominator, np.float32(1e-6))


def _gaussian(sigma: float, offsets: np.ndarray) -> np.ndarray:
    """:func:`au_face.nn.smoother.gaussian_kernel`'s taps at ``offsets``."""
    if sigma <= 0:
        return (offsets == 0).astype(np.float32)
    return np.exp(-0.5 * (offsets / sigma) ** 2)


# -- the export cache --------------------------------------------------------------------------
def export_path(checkpoint: str | Path) -> Path:
    """Where the export of ``checkpoint`` is cached: named by the SHA-256 of its bytes and :data:`EXPORT_VERSION`."""
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:24]
    return user_cache_dir() / "refiners" / f"{digest}_v{EXPORT_VERSION}.npz"


def load_array_refiner(checkpoint: str | Path) -> NumpyRefiner | AUFaceRefiner:
    """The refiner of ``checkpoint`` for ``au-face reconstruct``: the NumPy one, read from the cache when
    it was exported before (no torch import), else loaded with torch
    (:func:`~au_face.model.refiner.load_refiner`, and its errors), exported and cached (best effort: an
    unwritable cache only costs the next run the export again). A model with a video branch stays the
    torch :class:`~au_face.model.refiner.AUFaceRefiner`."""
    try:
        cached: Path | None = export_path(checkpoint)
    except OSError:  # unreadable checkpoint: load_refiner below names the problem
        cached = None
    if cached is not None and cached.is_file():
        try:
            return NumpyRefiner.load(cached)
        except (OSError, ValueError, KeyError, NotExportableError):
            pass  # a damaged or outdated cache file is made again
    from au_face.model.refiner import load_refiner

    refiner = load_refiner(checkpoint)
    try:
        arrays = export_arrays(refiner)
    except NotExportableError:
        return refiner
    if cached is not None:
        with suppress(OSError):
            atomic_save_npz(cached, compressed=False, **arrays)
    return NumpyRefiner(arrays)


__all__ = [
    "EXPORT_VERSION",
    "NotExportableError",
    "NumpyRefiner",
    "export_arrays",
    "export_path",
    "load_array_refiner",
]
