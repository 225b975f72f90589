"""Small faces: how often the reconstructor finds a face that is small in a large frame, and at what cost.

    python benchmarks/bench_small_faces.py [--photos DIR] [--count 60] [--video PATH]

Each face photo (``--photos``: the first ``--count`` ``*_0001.jpg`` of a folder such as the muxspace
facial_expressions images, tight 350 px face crops, the reserved quarter left out; default: the
shared ``single_face.jpg`` at random crops) is shrunk so that its face is ``W`` px wide and pasted
at a random place on a grey 1280×720 frame. Per ``W``, beside MediaPipe Face Mesh on the whole frame (what a user of Face Mesh
gets, and what the reconstructor did before it searched tiles):

* the share of photos where each finds the face, and the reconstructor's ms per photo;
* the reconstructor's landmark error: mean distance (px) between its iBUG-68 points and those it
  gives on the photo before shrinking, shrunk likewise; and the packaged default model's AU
  probabilities' mean absolute change against the photo before shrinking; both without and with the
  close look at a small face (``CLOSE_LOOK_SHARE``).

Then a clip (``--video``, default the shared ``single_face.mp4``) at full size and shrunk to a face
55 and 80 px wide moving across a 1280×720 frame: frames with a face, ms per frame, and the default
model's AU probabilities' mean absolute difference from those at full size; and 90 frames without a
face (1280×720): ms per frame against the bare Face Mesh loop.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch

from au_face.coarse import mediapipe
from au_face.coarse.base import CoarseFrames
from au_face.coarse.mediapipe import MediaPipeReconstructor
from au_face.data.datamodules.photos import is_reserved
from au_face.faces.mediapipe import require_face_mesh
from au_face.io.checkpoints import default_checkpoint
from au_face.io.video import VideoReader
from au_face.model.refiner import load_refiner

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
FRAME = (720, 1280)
WIDTHS = (40, 50, 60, 80, 100, 130, 160, 200)


def paste(rgb: np.ndarray, scale: float, x: int, y: int) -> np.ndarray:
    canvas = np.full((*FRAME, 3), 100, np.uint8)
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas


def face_photos(folder: Path | None, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    if folder is not None:
        paths = [p for p in sorted(folder.glob("*_0001.jpg")) if not is_reserved(p.name)][:count]
        return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    photo = cv2.cvtColor(cv2.imread(str(SHARED / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    h, w = photo.shape[:2]
    crops = []
    for _ in range(count):
        side = int(rng.uniform(0.8, 1.0) * min(h, w))
        x, y = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
        crops.append(np.ascontiguousarray(photo[y : y + side, x : x + side]))
    return crops


@contextmanager
def without_close_look() -> Iterator[None]:
    """The reconstructor as it was before it looked at a photo's small face again up close."""
    share = mediapipe.CLOSE_LOOK_SHARE
    mediapipe.CLOSE_LOOK_SHARE = 0.0
    try:
        yield
    finally:
        mediapipe.CLOSE_LOOK_SHARE = share


def au_probabilities(refiner, arrays: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return refiner.refine(CoarseFrames.from_numpy(arrays)).au_probs[0].numpy()


def photo_table(photos: list[np.ndarray], rng: np.random.Generator) -> None:
    reconstructor = MediaPipeReconstructor(crop_size=0, appearance=True)
    refiner = load_refiner(default_checkpoint())
    face_mesh = require_face_mesh().FaceMesh(static_image_mode=True)
    large = [reconstructor.reconstruct_still(p, 30.0) for p in photos]
    kept = [(p, r, au_probabilities(refiner, r)) for p, r in zip(photos, large) if r["valid"][0]]
    print(f"{len(kept)} of {len(photos)} photos with a face at full size; frame {FRAME[1]}×{FRAME[0]}")
    print("landmark error: px from the full-size photo's points, shrunk; AU |Δp|: the default model's mean")
    print("absolute change over its AUs against the full-size photo; each without → with the close look")
    print(
        "| face width | Face Mesh alone finds | reconstructor finds | ms per photo | landmark error px | AU abs(Δp) |"
    )
    print("|---|---|---|---|---|---|")
    for width in WIDTHS:
        plain = found = 0
        seconds, errors, changes = 0.0, [], []
        for photo, reference, probs in kept:
            landmarks = reference["landmarks2d"][0]
            scale = width / float(np.ptp(landmarks[:, 0]))
            size = np.array(photo.shape[1::-1]) * scale
            x, y = (rng.integers(0, FRAME[1] - size[0]), rng.integers(0, FRAME[0] - size[1]))
            frame = paste(photo, scale, int(x), int(y))
            plain += face_mesh.process(frame).multi_face_landmarks is not None
            with without_close_look():
                first = reconstructor.reconstruct_still(frame, 30.0)
            start = time.perf_counter()
            out = reconstructor.reconstruct_still(frame, 30.0)
            seconds += time.perf_counter() - start
            if out["valid"][0] and first["valid"][0]:
                found += 1
                expected = landmarks * scale + np.array([x, y])
                errors.append(
                    [float(np.linalg.norm(r["landmarks2d"][0] - expected, axis=-1).mean()) for r in (first, out)]
                )
                changes.append([float(np.abs(au_probabilities(refiner, r) - probs).mean()) for r in (first, out)])
        n = len(kept)
        error = "{:.2f} → {:.2f}".format(*np.mean(errors, axis=0)) if errors else "–"
        change = "{:.3f} → {:.3f}".format(*np.mean(changes, axis=0)) if changes else "–"
        print(f"| {width} px | {plain / n:.0%} | {found / n:.0%} | {1000 * seconds / n:.0f} | {error} | {change} |")
    face_mesh.close()
    reconstructor.close()


def clip_figures(video: Path) -> None:
    frames = [frame.rgb for frame in VideoReader(video)]
    width = float(
        np.ptp(MediaPipeReconstructor(crop_size=0).reconstruct_still(frames[0], 30.0)["landmarks2d"][0][:, 0])
    )
    blank = [np.full((*FRAME, 3), 90, np.uint8)] * 90
    refiner = load_refiner(default_checkpoint())
    MediaPipeReconstructor(crop_size=0).reconstruct(frames[:2], [0.0, 1 / 30], 30.0)  # start-up, not timed
    clips = {"full size": frames, "no face, 1280×720": blank}
    for face in (55, 80):  # moving across the frame; kept inside it
        scale = face / width
        room = np.array(FRAME[::-1]) - np.ceil(np.array(frames[0].shape[1::-1]) * scale) - 1
        clips[f"face {face} px in 1280×720"] = [
            paste(f, scale, int((200 + 4 * i) % room[0]), int((300 + 2 * i) % room[1])) for i, f in enumerate(frames)
        ]
    full = None
    for name, clip in clips.items():
        reconstructor = MediaPipeReconstructor(crop_size=0, appearance=True)
        start = time.perf_counter()
        out = reconstructor.reconstruct(clip, [i / 30 for i in range(len(clip))], 30.0)
        seconds = time.perf_counter() - start
        reconstructor.close()
        line = f"{name}: {out.num_valid}/{len(clip)} frames with a face, {1000 * seconds / len(clip):.1f} ms a frame"
        if out.num_valid:
            with torch.no_grad():
                probs = refiner.refine(out).au_probs.numpy()
            if full is None:
                full = probs
            else:
                line += (
                    f"; the default model's AU probabilities {np.nanmean(np.abs(probs - full)):.3f} from full size's"
                )
        print(line)
    face_mesh = require_face_mesh().FaceMesh(static_image_mode=False)
    start = time.perf_counter()
    for frame in blank:
        face_mesh.process(frame)
    print(f"bare Face Mesh loop, no face: {1000 * (time.perf_counter() - start) / len(blank):.1f} ms a frame")
    face_mesh.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, help="a folder of face photos (*_0001.jpg)")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--video", type=Path, default=SHARED / "single_face.mp4")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    photo_table(face_photos(args.photos, args.count, rng), rng)
    clip_figures(args.video)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
