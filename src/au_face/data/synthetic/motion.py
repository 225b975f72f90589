"""What a synthetic face does over time: AU events with co-occurrence, unlabelled speech and blinks,
head and view poses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from au_face.data.synthetic.config import (
    CO_OCCURRENCE_RULES,
    DEFAULT_OCCUPANCY,
    EXCLUSION_RULES,
    SPONTANEOUS_OCCUPANCY,
    CoOccurrence,
    SyntheticConfig,
)
from au_face.data.synthetic.simreal import sample_view, view_rotation


@dataclass(frozen=True)
class _Event:
    start: int
    onset: int
    apex: int
    offset: int
    peak: float

    @property
    def end(self) -> int:
        return self.start + self.onset + self.apex + self.offset

    def overlaps(self, other: _Event) -> bool:
        return self.start < other.end and other.start < self.end

    def profile(self, num_frames: int) -> np.ndarray:
        """``[T]`` activation: smoothstep up over ``onset``, hold ``apex``, smoothstep down over ``offset``."""
        t = np.arange(num_frames, dtype=np.float64) - self.start
        rise = _smoothstep(t / self.onset)
        fall = _smoothstep((self.onset + self.apex + self.offset - t) / self.offset)
        return self.peak * np.minimum(rise, fall)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _random_event(start: int, rng: np.random.Generator, config: SyntheticConfig) -> _Event:
    return _Event(
        start=start,
        onset=int(rng.integers(config.onset_frames[0], config.onset_frames[1] + 1)),
        apex=int(rng.integers(config.apex_frames[0], config.apex_frames[1] + 1)),
        offset=int(rng.integers(config.offset_frames[0], config.offset_frames[1] + 1)),
        peak=float(rng.uniform(*config.intensity_range)),
    )


def _spontaneous_events(occupancy: float, rng: np.random.Generator, config: SyntheticConfig) -> list[_Event]:
    """A renewal process of events covering about ``occupancy`` of the frames."""
    if occupancy <= 0:
        return []
    occupancy = min(occupancy, 0.95)
    mean_length = sum((lo + hi) / 2 for lo, hi in (config.onset_frames, config.apex_frames, config.offset_frames))
    mean_gap = mean_length * (1 - occupancy) / occupancy
    events = []
    t = -int(rng.uniform(0, mean_length + mean_gap))  # start in the stationary regime
    while t < config.frames_per_sequence:
        event = _random_event(t, rng, config)
        if event.end > 0:
            events.append(event)
        t = event.end + int(round(rng.exponential(mean_gap)))
    return events


def _follower(leader: _Event, rule: CoOccurrence, rng: np.random.Generator, config: SyntheticConfig) -> _Event:
    jitter = rng.integers(-1, 2, size=3)
    ratio = rng.uniform(*rule.intensity_ratio)
    return _Event(
        start=leader.start + int(rng.integers(rule.lag[0], rule.lag[1] + 1)),
        onset=max(1, leader.onset + int(jitter[0])),
        apex=max(1, leader.apex + int(jitter[1]) * 2),
        offset=max(1, leader.offset + int(jitter[2])),
        peak=float(np.clip(leader.peak * ratio, config.intensity_range[0], 1.0)),
    )


#: ICT shapes of unlabelled activity: speech (jaw and lips) and blinks.
NUISANCE_SHAPES = {
    "speech": ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLowerDown_L", "mouthLowerDown_R"),
    "blink": ("eyeBlink_L", "eyeBlink_R"),
}


def sample_nuisance(
    expression_names: Sequence[str],
    excluded: set[str],
    num_frames: int,
    fps: float,
    rng: np.random.Generator,
    scale: float,
) -> np.ndarray:
    """``[T,E]`` expression weights of unlabelled speech bouts and blinks on shapes not in ``excluded``.

    Speech: bouts of 1–3 s in about half of the time, jaw and lip shapes oscillating at 3–5
    syllables per second with random amplitudes. Blinks: every 2–6 s, closing over ~3 frames.
    """
    out = np.zeros((num_frames, len(expression_names)), dtype=np.float32)
    if scale <= 0:
        return out
    index = {name: i for i, name in enumerate(expression_names)}
    t = np.arange(num_frames) / fps
    speaking = np.zeros(num_frames)
    start = rng.uniform(-2.0, 1.0)
    while start < t[-1]:
        length = rng.uniform(1.0, 3.0)
        speaking += _smoothstep((t - start) / 0.2) * _smoothstep((start + length - t) / 0.2)
        start += length + rng.uniform(0.5, 3.0)
    for name in NUISANCE_SHAPES["speech"]:
        if name in index and name not in excluded:
            rate, phase, amplitude = rng.uniform(3.0, 5.0), rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.35)
            out[:, index[name]] += scale * amplitude * speaking * 0.5 * (1 + np.sin(2 * np.pi * rate * t + phase))
    blink = np.zeros(num_frames)
    moment = rng.uniform(0.0, 3.0)
    while moment < t[-1]:
        blink = np.maximum(blink, np.exp(-0.5 * ((t - moment) / 0.05) ** 2))
        moment += rng.uniform(2.0, 6.0)
    for name in NUISANCE_SHAPES["blink"]:
        if name in index and name not in excluded:
            out[:, index[name]] += scale * blink
    return out


def sample_au_activations(aus: Sequence[int], rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """``[T,K]`` float32 AU activation tracks in ``[0,1]`` (see the module docstring)."""
    events = {
        au: _spontaneous_events(config.occupancy_scale * SPONTANEOUS_OCCUPANCY.get(au, DEFAULT_OCCUPANCY), rng, config)
        for au in aus
    }
    if config.cooccurrence:
        for rule in CO_OCCURRENCE_RULES:
            if rule.leader not in events or rule.follower not in events:
                continue
            for leader in list(events[rule.leader]):
                p = rule.probability if leader.peak >= rule.strong_from else rule.weak_probability
                if rng.random() < p:
                    events[rule.follower].append(_follower(leader, rule, rng, config))
        for au, others, keep in EXCLUSION_RULES:
            if au not in events:
                continue
            rivals = [e for other in others for e in events.get(other, [])]
            events[au] = [e for e in events[au] if not any(e.overlaps(r) for r in rivals) or rng.random() < keep]
    tracks = np.zeros((config.frames_per_sequence, len(aus)), dtype=np.float64)
    for k, au in enumerate(aus):
        for event in events[au]:
            tracks[:, k] = np.maximum(tracks[:, k], event.profile(config.frames_per_sequence))
    return np.clip(tracks, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# head motion


def _smooth_signal(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """``[T]`` slow wobble in ``[-1, 1]``: two sinusoids of 0.1-0.6 Hz with random phases and weights."""
    t = np.arange(num_frames) / fps
    freqs = rng.uniform(0.1, 0.6, size=2)
    phases = rng.uniform(0, 2 * np.pi, size=2)
    weights = rng.uniform(0.3, 1.0, size=2)
    wave = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)
    return wave / weights.sum()


#: Model frame (y up, face looking along +z) -> image frame (y down, z away from the viewer).
_MODEL_TO_IMAGE = np.diag([1.0, -1.0, -1.0])


def sample_head_pose(
    landmarks: np.ndarray, rng: np.random.Generator, config: SyntheticConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth rigid pose ``(rotation [T,3,3], translation [T,3], scale [T])`` into crop pixels.

    ``landmarks`` ``[68,3]`` of the neutral identity set the face centre and size.
    """
    n, size = config.frames_per_sequence, config.image_size
    amplitude = np.radians(config.head_rotation_deg) * np.array([0.6, 1.0, 0.4])  # pitch (x), yaw (y), roll (z)
    angles = np.stack([a * _smooth_signal(n, config.fps, rng) for a in amplitude], axis=1)
    rotation = _MODEL_TO_IMAGE @ Rotation.from_euler("xyz", angles).as_matrix()
    extent = float(np.ptp(landmarks[:, :2], axis=0).max())
    base_scale = config.face_fill * size / extent * rng.uniform(0.95, 1.05)
    scale = base_scale * (1 + 0.02 * _smooth_signal(n, config.fps, rng))
    drift = config.head_translation * size * np.stack([_smooth_signal(n, config.fps, rng) for _ in range(2)], axis=1)
    centre = landmarks.mean(axis=0)
    target = np.concatenate([size / 2 + drift, np.zeros((n, 1))], axis=1)
    translation = target - scale[:, None] * (rotation @ centre)
    return rotation.astype(np.float32), translation.astype(np.float32), scale.astype(np.float32)


def sample_view_pose(
    landmarks: np.ndarray, rng: np.random.Generator, config: SyntheticConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`sample_head_pose` for whole frames: a random base view (``view_range_deg``)
    plus the slow wobble, a random size (``face_fill_range``) and an off-centre position."""
    n, size = config.frames_per_sequence, config.image_size
    amplitude = np.radians(config.head_rotation_deg) * np.array([0.6, 1.0, 0.4])
    wobble = np.stack([a * _smooth_signal(n, config.fps, rng) for a in amplitude], axis=1)
    rotation = _MODEL_TO_IMAGE @ view_rotation(sample_view(rng, config.view_range_deg), wobble)
    extent = float(np.ptp(landmarks[:, :2], axis=0).max())
    base_scale = rng.uniform(*config.face_fill_range) * size / extent
    scale = base_scale * (1 + 0.02 * _smooth_signal(n, config.fps, rng))
    offset = rng.uniform(-0.1, 0.1, size=2) * size
    drift = config.head_translation * size * np.stack([_smooth_signal(n, config.fps, rng) for _ in range(2)], axis=1)
    target = np.concatenate([size / 2 + offset + drift, np.zeros((n, 1))], axis=1)
    translation = target - scale[:, None] * (rotation @ landmarks.mean(axis=0))
    return rotation.astype(np.float32), translation.astype(np.float32), scale.astype(np.float32)
