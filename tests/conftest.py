"""Shared fixtures: the read-only ``../shared`` material and small ICT models."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"needs the shared test material at {data} (read-only data beside the repository)")
    return data


@pytest.fixture(scope="session")
def ict_npz(shared_data: Path) -> Path:
    return shared_data / "ict-facekit" / "ict_facekit_light_neutral_expr57_id50.npz"


@pytest.fixture(scope="session")
def ict_model(ict_npz: Path):
    """The ICT model on the narrow face region (6706 vertices)."""
    from au_face.faces.ict import ICTFaceModel

    return ICTFaceModel.from_npz(ict_npz).restrict("narrow")


@pytest.fixture(scope="session")
def video_dir(shared_data: Path) -> Path:
    return shared_data / "video"
