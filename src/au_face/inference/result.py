"""What a reconstruction gives back: the files written and, read on first use, the meshes and AU table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from au_face.errors import AUFaceError
from au_face.io.au_csv import AUTable, au_table_from_rows
from au_face.io.meshes import MeshSequence, load_mesh_sequence_npz, save_mesh_sequence_npz

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from pytorch3d.structures import Meshes

#: Output kinds and how :meth:`ReconstructionResult.summary` names them.
OUTPUT_NAMES = {
    "meshes": "mesh sequence (npz)",
    "au_csv": "pose, confidence and AUs (csv)",
    "au_plot": "AU tracks (png)",
    "frame_meshes": "per-frame meshes",
    "overlay": "overlay video",
}


class ResultError(AUFaceError, RuntimeError):
    """An output that was not produced, or an optional package that is missing."""


def output_paths(name: str, out_dir: str | Path) -> dict[str, Path]:
    """The files of one reconstructed input in ``out_dir``, named after the input (``name``)."""
    out = Path(out_dir)
    return {
        "meshes": out / f"{name}_meshes.npz",
        "au_csv": out / f"{name}_aus.csv",
        "au_plot": out / f"{name}_aus.png",
        "frame_meshes": out / f"{name}_meshes",
        "overlay": out / f"{name}_overlay.mp4",
    }


@dataclass
class ReconstructionResult:
    """One reconstructed input (a video, an image or a folder of frames).

    Attributes:
        paths: the files written, by kind (see :func:`output_paths`); empty when none were kept.
        num_frames, num_valid: frames processed and frames with a face.
        timings: seconds per stage. refined: whether a trained model refined the meshes.
        name: the input's name (the stem of every output file).
        photos: a photo collection (:mod:`au_face.inference.photos`): one row per photo, each on its own;
            the CSV's first column ``file`` names them, and there is no AU plot.
        num_faces: a collection's rows with a face (with every face of each photo, more than
            ``num_valid``, the photos with a face); None for a video.

    :attr:`meshes` and :attr:`aus` are read from the files on first use (:meth:`load` reads
    them at once, so the files may then go).
    """

    paths: dict[str, Path]
    num_frames: int
    num_valid: int
    timings: dict[str, float] = field(default_factory=dict)
    refined: bool = False
    name: str = "video"
    photos: bool = False
    num_faces: int | None = None
    _meshes: MeshSequence | None = field(default=None, repr=False)
    _aus: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def meshes(self) -> MeshSequence:
        """The mesh sequence: ``vertices [T,V,3]`` (refined where a model ran, canonical head frame),
        ``triangles``, ``valid``, ``timestamps``; ``extra`` holds pose, ``coarse_vertices``, ``au_probs``..."""
        if self._meshes is None:
            self._meshes = load_mesh_sequence_npz(self._path("meshes"))
        return self._meshes

    @property
    def vertices(self) -> np.ndarray:
        """``[T,V,3]`` final canonical vertices (the coarse mesh where no face was found)."""
        return self.meshes.vertices

    @property
    def aus(self) -> pd.DataFrame:
        """One row per frame with the CSV's columns (``frame, face_id, timestamp, confidence,
        success, pose_*``, ``AUxx_p``, ``AUxx_c``); NaN where no face was found."""
        if self._aus is None:
            import pandas as pd

            self._aus = pd.read_csv(self._path("au_csv"))
        return self._aus

    def load(self) -> Self:
        """Read the meshes and the AU table into memory."""
        _ = self.meshes, self.aus
        return self

    def to_csv(self, path: str | Path) -> Path:
        """Write :attr:`aus` as CSV (frames without a face keep empty cells)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.aus.to_csv(path, index=False)
        return path

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write the mesh npz, the CSV and (refined) the AU track PNG to ``directory``; return their paths."""
        paths = output_paths(self.name, directory)
        seq = self.meshes
        save_mesh_sequence_npz(paths["meshes"], seq.vertices, seq.triangles, seq.valid, seq.timestamps, **seq.extra)
        written = {"meshes": paths["meshes"], "au_csv": self.to_csv(paths["au_csv"])}
        if self.refined and not self.photos:
            written["au_plot"] = self.plot(paths["au_plot"])
        return written

    def au_table(self) -> AUTable:
        """:attr:`aus` as arrays."""
        df = self.aus
        return au_table_from_rows(list(df.columns), df.astype(str).values.tolist(), self.name)

    def plot(self, path: str | Path | None = None) -> Figure | Path:
        """AU probabilities over time: saved as PNG to ``path``, or returned as a matplotlib Figure."""
        from au_face.viz.au_tracks import au_tracks_figure, plot_au_tracks

        if not self.refined:
            raise ResultError("no AU probabilities to plot: the reconstruction ran without a trained model")
        title = f"{self.name}: AU probabilities"
        table = self.au_table()
        return au_tracks_figure(table, title=title) if path is None else plot_au_tracks(table, path, title=title)

    def to_pytorch3d(self, device: str = "cpu") -> Meshes:
        """The mesh sequence as ``pytorch3d.structures.Meshes`` (one mesh per frame, all frames).

        Needs PyTorch3D (``pip install 'au_face[pytorch3d]'``); its structures work with any torch.
        """
        import torch

        try:
            from pytorch3d.structures import Meshes
        except ImportError as err:
            raise ResultError(
                "to_pytorch3d needs PyTorch3D: pip install 'au_face[pytorch3d]' (easypytorch3d; see the README)"
            ) from err
        seq = self.meshes
        verts = torch.from_numpy(np.ascontiguousarray(seq.vertices, dtype=np.float32)).to(device)
        faces = torch.from_numpy(seq.triangles.astype(np.int64)).to(device)
        return Meshes(verts=verts, faces=faces.expand(len(verts), -1, -1))

    def summary(self) -> str:
        """A few lines for the terminal."""
        unit = "photos (each on its own)" if self.photos else "frames"
        lines = [f"{self.num_frames} {unit}, face found in {self.num_valid}"]
        if self.num_faces is not None and self.num_faces != self.num_valid:
            lines[0] += f" ({self.num_faces} faces)"
        lines += [f"  {OUTPUT_NAMES[key]:<31} {path}" for key, path in self.paths.items()]
        if not self.refined:
            lines.append("  AU probabilities and the refined mesh need a trained model (--ckpt)")
        total = self.timings.get("total", 0.0)
        if total > 0 and self.num_frames:
            lines.append(
                f"  {total:.1f} s in all, {self.num_frames / total:.1f} {'photos' if self.photos else 'frames'}/s"
            )
        return "\n".join(lines)

    def _path(self, kind: str) -> Path:
        if kind not in self.paths:
            raise ResultError(f"{self.name}: no {OUTPUT_NAMES[kind]} was kept (call load() before its folder goes)")
        return self.paths[kind]


__all__ = ["OUTPUT_NAMES", "ReconstructionResult", "ResultError", "output_paths"]
