"""Shot changes (cuts) in a video, from frame to frame: where tracking starts again and no face track goes on."""

from __future__ import annotations

import cv2
import numpy as np

#: A frame starts a new shot when it differs from the one before by more than this: the mean absolute
#: change of its hue, saturation and value (0-255) on a 64 px wide thumbnail. PySceneDetect's content
#: detector uses the same measure with this default. At a shot change Face Mesh starts tracking again,
#: and no face track goes on: a face at the same place after a cut is most often another person.
SHOT_CHANGE = 27.0
#: ... and when more than this share of the thumbnail's pixels changed by more than :data:`SHOT_CHANGE`:
#: a cut changes most of the picture (two thirds and more in the clips looked at), a person or a
#: light coming into one half of it does not.
SHOT_CHANGED_SHARE = 0.5
#: Width in pixels of the thumbnails shot changes are measured on.
THUMBNAIL_WIDTH = 64


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """An RGB frame as a :data:`THUMBNAIL_WIDTH` px wide HSV thumbnail (uint8), of pixels picked at even
    steps (as PySceneDetect skips pixels): a few microseconds a frame."""
    height, width = rgb.shape[:2]
    size = (THUMBNAIL_WIDTH, max(1, round(height * THUMBNAIL_WIDTH / width)))
    return cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2HSV)


def shot_change(previous: np.ndarray, current: np.ndarray) -> bool:
    """Whether the frame of thumbnail ``current`` starts a new shot after that of ``previous``
    (:func:`thumbnail`s): their mean absolute HSV difference exceeds :data:`SHOT_CHANGE`, and so does
    that of more than :data:`SHOT_CHANGED_SHARE` of their pixels."""
    if previous.shape != current.shape:
        return True
    change = cv2.absdiff(previous, current)
    if sum(cv2.mean(change)[:3]) / 3 <= SHOT_CHANGE:  # (most frames: no need to look at each pixel)
        return False
    changed = change.sum(axis=2, dtype=np.uint16) > 3 * SHOT_CHANGE
    return np.count_nonzero(changed) > SHOT_CHANGED_SHARE * changed.size


__all__ = ["SHOT_CHANGE", "SHOT_CHANGED_SHARE", "THUMBNAIL_WIDTH", "shot_change", "thumbnail"]
