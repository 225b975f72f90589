"""AU readings that the coarse mesh rules out: their probability is set to 0 after the network.

FACS scores AU24 (Lip Pressor) only with the lips pressed together, so a frame whose coarse mesh
shows the lips parted (:func:`~au_face.data.lips.lips_parted`: the inner lips at least
:data:`~au_face.data.lips.LIPS_PARTED` of the mouth's width apart, wider than nine in ten neutral
training photos) cannot show it. The network learnt AU24 partly from open mouths: anger's weak
label lists AU24 while most angry training photos shout, and the synthetic generator draws AU24
independently of AU25/AU26, so a third of its renders with parted lips carry AU24. Training is
unchanged (the losses read the logits); only the probabilities are ruled out, so metrics, the CSV
and the overlay agree with the mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from au_face.data.lips import inner_lip_points, lips_parted

#: Lip Pressor
LIP_PRESS = 24


def lip_press_rule(aus: Sequence[int], landmarks68: np.ndarray) -> tuple[int, list[int]] | None:
    """AU24's column among ``aus`` and the inner-lip vertex ids it is tested on, or None when the
    model has no AU24 or the topology no inner-lip landmarks (nothing is then ruled out)."""
    points = inner_lip_points(landmarks68)
    if LIP_PRESS not in aus or points is None:
        return None
    return list(aus).index(LIP_PRESS), [int(i) for i in points]


def rule_out(probs: Any, vertices: Any, rule: tuple[int, list[int]] | None) -> Any:
    """``probs [...,K]`` with AU24 set to 0 on the frames whose ``vertices [...,V,3]`` show the lips
    parted (a NumPy array or a torch tensor alike; ``probs`` itself is not modified)."""
    if rule is None:
        return probs
    column, points = rule
    keep = ~lips_parted(vertices, points)
    probs = probs.clone() if hasattr(probs, "clone") else probs.copy()
    probs[..., column] = probs[..., column] * keep
    return probs


__all__ = ["LIP_PRESS", "lip_press_rule", "rule_out"]
