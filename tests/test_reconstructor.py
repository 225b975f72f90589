"""``au_face.Reconstructor`` (one load for many inputs) and ``au_face.reconstruct`` freeing what it builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import au_face
from au_face.inference.api import UsageError

pytest.importorskip("mediapipe")

#: Calls measured after a warm-up, and the growth of resident and peak memory allowed per call.
#: Before the fix each call kept its Face Mesh graphs: +37 MB a call (369 MB in these 10 calls).
#: Now calls 6-15 grow 19-23 MB in all (three runs): the first ~20 calls grow about 90 MB
#: (MediaPipe's start-up caches: a bare FaceMesh create/close loop does the same), later calls
#: about 0.06 MB each (200 calls: +98 MB in all, calls 21-200: +11 MB).
CALLS, WARM_UP, MB_PER_CALL = 10, 5, 4.0

_LOOP = """
import resource, sys
import au_face

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

photo, warm_up, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(warm_up):
    au_face.reconstruct(photo)
rss, peak = rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
for _ in range(calls):
    au_face.reconstruct(photo)
print(rss_mb() - rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak)
"""


@pytest.fixture(scope="module")
def photo(video_dir: Path) -> Path:
    return video_dir / "single_face.jpg"


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads resident memory from /proc")
def test_repeated_reconstruct_calls_do_not_grow_memory(photo: Path) -> None:
    """A fresh process (no other test's memory): ``CALLS`` calls on one photo after a warm-up."""
    out = subprocess.run(
        [sys.executable, "-c", _LOOP, str(photo), str(WARM_UP), str(CALLS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout.split()
    rss, peak = (float(x) for x in out[-2:])
    assert rss < CALLS * MB_PER_CALL, f"resident memory grew {rss:.1f} MB in {CALLS} calls"
    assert peak < CALLS * MB_PER_CALL, f"peak memory grew {peak:.1f} MB in {CALLS} calls"


def test_reconstruct_closes_the_reconstructor_it_builds(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from au_face.coarse import registry

    built = []
    real = registry.build_reconstructor
    monkeypatch.setattr(
        registry,
        "build_reconstructor",
        lambda *a, **k: built.append(real(*a, **k)) or built[-1],
    )
    au_face.reconstruct(photo, refine=False)
    assert len(built) == 1 and built[0]._mesh is None and built[0]._turned_mesh is None, "Face Mesh graphs left open"


def test_a_reconstructor_loads_once_for_many_inputs(
    photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from au_face.coarse import registry
    from au_face.inference import api

    loads, builds = [], []
    load, build = api.load_array_refiner, registry.build_reconstructor
    monkeypatch.setattr(api, "load_array_refiner", lambda path: loads.append(path) or load(path))
    monkeypatch.setattr(
        registry,
        "build_reconstructor",
        lambda *a, **k: builds.append(a) or build(*a, **k),
    )
    with au_face.Reconstructor() as reconstruct:
        singles = [reconstruct(photo) for _ in range(6)]
        collection = reconstruct([photo] * 10)
        on_disk = reconstruct(photo, out=tmp_path)
    assert len(loads) == 1 and len(builds) == 1, f"{len(loads)} model loads and {len(builds)} reconstructor builds"
    assert all(r.refined for r in singles) and collection.num_frames == 10 and on_disk.paths["au_csv"].is_file()
    first = singles[0].aus.filter(like="_p").to_numpy()
    for result in singles[1:]:
        np.testing.assert_array_equal(result.aus.filter(like="_p").to_numpy(), first)
    np.testing.assert_allclose(
        collection.aus.filter(like="_p").to_numpy(),
        np.repeat(first, 10, axis=0),
        atol=1e-4,
    )
    assert reconstruct.coarse._mesh is None and reconstruct.refiner is None, "close() frees the graphs and the model"
    with pytest.raises(UsageError, match="closed"):
        reconstruct(photo)


def test_a_reconstructor_given_an_instance_leaves_it_open(photo: Path) -> None:
    from au_face.coarse.mediapipe import MediaPipeReconstructor

    mine = MediaPipeReconstructor()
    with au_face.Reconstructor(refine=False, reconstructor=mine) as reconstruct:
        reconstruct(photo)
    assert mine._mesh is not None, "the caller's reconstructor is the caller's to close"
    mine.close()
