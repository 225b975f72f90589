"""How much of each AU's motion MediaPipe's canonical mesh keeps, with the old and the new pose vertices.

    python benchmarks/bench_visibility.py      # needs AU_FACE_ICT and mediapipe

Definition (issue #7): the AU's ICT shapes at full activation on the neutral identity, frontal, are
rendered like the sim-to-real data (`au_face.data.synthetic.simreal`, no camera degradation) beside the
neutral face, and MediaPipe runs on both. On the 30 MediaPipe-topology vertices with the largest
ground-truth displacement, the **share** is the mean displacement MediaPipe's canonical mesh
recovers there divided by ground truth's; **r** is the Pearson correlation of the two displacement
norms over all 468 vertices. "Before" removes the pose with the forehead and midline vertices of
`MediaPipeReconstructor` version 1, "after" with today's `STABLE_VERTICES`.
"""

from __future__ import annotations

import numpy as np

from au_face.aus import AU_SETS, au_label
from au_face.coarse.mediapipe import MediaPipeReconstructor
from au_face.data.synthetic.shading import Lighting, MeshRenderer, gradient_background
from au_face.data.synthetic.simreal import RENDER_REGION, Appearance, face_albedo, paint_openings
from au_face.faces.align import similarity_fit
from au_face.faces.correspondence import TopologyMap
from au_face.faces.ict import ICTFaceModel
from au_face.faces.mediapipe import STABLE_VERTICES, mediapipe_topology, to_pose_frame
from au_face.utils.assets import ICT_MODEL

#: The pose vertices of MediaPipeReconstructor version 1 (forehead and brow-coupled midline included).
STABLE_VERTICES_V1 = np.array([
    10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 109, 338, 67, 297, 103, 332, 54, 284, 108, 337, 69, 299, 104, 333,
    33, 263, 133, 362, 127, 356, 162, 389, 21, 251, 234, 454,
])  # fmt: skip
SIZE = 320
TOP = 30


def render(face: ICTFaceModel, weights: np.ndarray, albedo: np.ndarray, appearance: Appearance) -> np.ndarray:
    mesh = face.shape(np.zeros(0, np.float32), weights[None])[0]
    rotation = np.diag([1.0, -1.0, -1.0])  # model frame (y up) -> image frame (y down)
    lm = face.neutral[face.landmarks68]
    scale = 0.55 * SIZE / float(np.ptp(lm[:, :2], axis=0).max())
    posed = scale * mesh @ rotation.T + (np.array([SIZE / 2, SIZE / 2, 0.0]) - scale * rotation @ lm.mean(axis=0))
    lighting = Lighting(np.array([0.2, -0.3, -1.0]) / np.linalg.norm([0.2, -0.3, -1.0]), 0.35, 1.0, appearance.skin)
    shot = MeshRenderer(face.triangles, SIZE).render(
        posed, lighting, gradient_background(SIZE, (0.3, 0.35, 0.4), (0.6, 0.6, 0.55)), vertex_albedo=albedo
    )
    return paint_openings(shot.image, shot.mask, posed[face.landmarks68, :2], appearance, 0.75)


def canonical(points: np.ndarray, stable: np.ndarray, template: np.ndarray) -> np.ndarray:
    s, r, t = similarity_fit(template[stable], points[None, stable])
    return (points - t[0]) @ r[0] / s[0]


def main() -> int:
    full = ICTFaceModel.load(ICT_MODEL.resolve(None))
    narrow, face = full.restrict("narrow"), full.restrict(RENDER_REGION)
    topology_map = TopologyMap.between(narrow.topology(), mediapipe_topology())
    template = mediapipe_topology().template.astype(np.float64)
    appearance = Appearance(np.array([0.85, 0.66, 0.55]), np.array([0.12, 0.08, 0.05]), np.array([0.3, 0.2, 0.1]))
    albedo = face_albedo(face.neutral, face.landmarks68, appearance)
    reconstructor = MediaPipeReconstructor(crop_size=0)
    neutral_mp = topology_map(narrow.neutral)

    def detect(weights: np.ndarray) -> np.ndarray:
        reconstructor.reset()  # still images: no tracking between them
        points = reconstructor.detect(render(face, weights, albedo, appearance))
        if points is None:
            raise SystemExit("MediaPipe found no face in a render")
        return points

    rest = detect(np.zeros(len(face.expression_names), np.float32))
    print(
        "| AU | GT motion (cm, top-30 mean) | share before | r before | share after | r after |\n|---|---|---|---|---|---|"
    )
    for au in AU_SETS["default"]:
        weights = narrow.au_weights(au)
        gt = to_pose_frame(topology_map(narrow.shape(np.zeros(0, np.float32), weights[None])[0]), neutral_mp)
        gt_motion = np.linalg.norm(gt - to_pose_frame(neutral_mp, neutral_mp), axis=-1)
        top = np.argsort(gt_motion)[-TOP:]
        moved = detect(weights)
        cells = []
        for stable in (STABLE_VERTICES_V1, STABLE_VERTICES):
            motion = np.linalg.norm(canonical(moved, stable, template) - canonical(rest, stable, template), axis=-1)
            cells += [
                f"{motion[top].mean() / gt_motion[top].mean():.0%}",
                f"{np.corrcoef(motion, gt_motion)[0, 1]:.2f}",
            ]
        print(f"| {au_label(au)} | {gt_motion[top].mean():.2f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
