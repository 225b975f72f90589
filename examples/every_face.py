"""Every face of a group photo or of a video, from Python: where each face is and which AUs it shows.

    python examples/every_face.py PHOTO_OR_VIDEO [OUT_DIR]

A photo gives one row per face (``face_id`` numbered from the left); a video gives one result per
face (numbered by first sight, each followed through its shot). The packaged default model reads
the AUs. With OUT_DIR the usual files are kept there (CSV, meshes and, for a video, AU plots and
overlays per face).
"""

from __future__ import annotations

import sys

import pandas as pd

import au_face


def summary(table: pd.DataFrame) -> list[str]:
    """One line per face of an AU table: its place (pixels) and the AUs on in most of its rows."""
    lines = []
    for face_id, rows in table[table["success"] == 1].groupby("face_id"):
        on = rows.filter(like="_c").mean()
        aus = ", ".join(f"{name[:-2]} {share:.0%}" for name, share in on[on >= 0.5].sort_values().items())
        where = f"x {rows['pose_Tx'].mean():.0f}, y {rows['pose_Ty'].mean():.0f} px"
        lines.append(f"face {face_id} ({len(rows)} rows, {where}): {aus or 'no AU on'}")
    return lines


def main(source: str, out: str | None = None) -> list[str]:
    results = au_face.reconstruct(source, all_faces=True, out=out)
    tables = [r.aus for r in results] if isinstance(results, list) else [results.aus]
    lines = [line for table in tables for line in summary(table)]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
