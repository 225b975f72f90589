"""FACS Action Unit catalogue and the AU sets of the common benchmarks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from au_face.errors import AUFaceError

#: FACS number -> name (Ekman & Friesen's FACS manual names).
AU_NAMES: dict[int, str] = {
    1: "Inner Brow Raiser",
    2: "Outer Brow Raiser",
    4: "Brow Lowerer",
    5: "Upper Lid Raiser",
    6: "Cheek Raiser",
    7: "Lid Tightener",
    9: "Nose Wrinkler",
    10: "Upper Lip Raiser",
    11: "Nasolabial Deepener",
    12: "Lip Corner Puller",
    13: "Cheek Puffer",
    14: "Dimpler",
    15: "Lip Corner Depressor",
    16: "Lower Lip Depressor",
    17: "Chin Raiser",
    18: "Lip Pucker",
    20: "Lip Stretcher",
    22: "Lip Funneler",
    23: "Lip Tightener",
    24: "Lip Pressor",
    25: "Lips Part",
    26: "Jaw Drop",
    27: "Mouth Stretch",
    28: "Lip Suck",
    29: "Jaw Thrust",
    30: "Jaw Sideways",
    33: "Cheek Blow",
    43: "Eyes Closed",
    45: "Blink",
    61: "Eyes Turn Left",
    62: "Eyes Turn Right",
    63: "Eyes Up",
    64: "Eyes Down",
}

#: AUs whose movements last a few frames: those that open, close, press, round and stretch the lips
#: in speech, several times a second (the visemes: lips part and the jaw drops on vowels, press and
#: tighten on /m b p/, pucker on /u w/, stretch on /i/), and the blink (100–400 ms). The refinement
#: keeps its widest temporal filters off their regions (:class:`~au_face.nn.net.NetConfig`'s
#: ``fast_max_sigma``).
FAST_AUS: tuple[int, ...] = (18, 20, 23, 24, 25, 26, 45)

#: AU sets used by the benchmarks (order is the order of the label columns we emit).
AU_SETS: dict[str, tuple[int, ...]] = {
    "bp4d": (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24),
    "disfa": (1, 2, 4, 6, 9, 12, 25, 26),
    "affwild2": (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26),
    # au_face's default model: BP4D-12 ∪ DISFA-12 plus AU18 and AU45 — every AU with its own ICT
    # shapes that MediaPipe's mesh can see (docs/aus.md lists what is merged or left out and why).
    "default": (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 18, 20, 23, 24, 25, 26, 45),
}

_AU_PATTERN = re.compile(r"^\s*(?:au)?\s*0*(\d+)\s*$", re.IGNORECASE)


class UnknownAUError(AUFaceError, ValueError):
    """Raised for an AU name or number that is not in the FACS catalogue."""


def parse_au(name: str | int) -> int:
    """Parse ``"AU12"``, ``"au06"``, ``"12"`` or ``12`` into a FACS number."""
    if isinstance(name, bool):
        raise UnknownAUError(f"not an AU: {name!r}")
    if isinstance(name, int):
        number = name
    else:
        match = _AU_PATTERN.match(str(name))
        if match is None:
            raise UnknownAUError(f"cannot parse AU {name!r}: expected forms like 'AU12', 'AU06', '12'")
        number = int(match.group(1))
    if number not in AU_NAMES:
        known = ", ".join(str(n) for n in AU_NAMES)
        raise UnknownAUError(f"unknown AU {name!r}: FACS numbers known here are {known}")
    return number


def resolve_aus(aus: str | Iterable[str | int]) -> list[int]:
    """Resolve an AU set name (``"bp4d"``) or a list of AU names into FACS numbers.

    Duplicates are an error, order is kept.
    """
    if isinstance(aus, str):
        key = aus.strip().lower().replace("-", "").replace("_", "")
        if key in AU_SETS:
            return list(AU_SETS[key])
        aus = [part for part in re.split(r"[,\s]+", aus) if part]
    numbers = [parse_au(a) for a in aus]
    if not numbers:
        raise UnknownAUError("empty AU list")
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        raise UnknownAUError(f"AU list repeats {', '.join(au_label(d) for d in duplicates)}")
    return numbers


def au_label(number: int) -> str:
    """Canonical two-digit label, e.g. ``AU06``."""
    return f"AU{number:02d}"


def au_labels(numbers: Sequence[int]) -> list[str]:
    """Canonical labels for a list of FACS numbers."""
    return [au_label(n) for n in numbers]


# --------------------------------------------------------------------------------------------
# Weak AU labels from expression labels (docs/aus.md, "Weak AU labels from expressions")

#: The expressions of expression-labelled photo collections, in a fixed order.
EXPRESSIONS: tuple[str, ...] = ("neutral", "happiness", "sadness", "surprise", "fear", "anger", "disgust", "contempt")

#: Other spellings of the expressions (lower case) found in photo collections' CSVs.
EXPRESSION_SYNONYMS: dict[str, str] = {
    "happy": "happiness", "joy": "happiness", "sad": "sadness", "surprised": "surprise",
    "fearful": "fear", "afraid": "fear", "angry": "anger", "disgusted": "disgust", "contemptuous": "contempt",
}  # fmt: skip

#: Expression -> (AUs that belong to it: label 1, AUs incompatible with it: label 0). Every other
#: AU is unknown (-1, masked from losses and metrics). Sources: the EMFACS prototypes of Ekman &
#: Friesen and the AU frequencies per basic expression of Du, Tao & Martinez (2014, PNAS, Table 1);
#: docs/aus.md gives the reasoning row by row.
EXPRESSION_AUS: dict[str, tuple[frozenset[int], frozenset[int]]] = {
    # every AU is absent: FACS scores change from the person's own neutral face, so lips parted at rest
    # are that person's baseline, not AU25 (docs/aus.md)
    "neutral": (frozenset(), frozenset({1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 18, 20, 23, 24, 25, 26, 45})),
    "happiness": (frozenset({6, 12}), frozenset({1, 2, 4, 9, 10, 14, 15, 18, 20, 23, 24})),
    "sadness": (frozenset({1, 4, 15}), frozenset({2, 5, 12})),
    "surprise": (frozenset({1, 2, 5, 25, 26}), frozenset({4, 6, 7, 9, 10, 12, 15, 17, 18, 23, 24})),
    "fear": (frozenset({1, 2, 4, 5, 20, 25}), frozenset({6, 9, 12, 15, 18, 24})),
    "anger": (frozenset({4, 7, 24}), frozenset({1, 2, 12, 15, 18})),
    "disgust": (frozenset({9, 10}), frozenset({2, 5, 12, 18})),
    "contempt": (frozenset({14}), frozenset({1, 2, 4, 9, 15})),
}


class UnknownExpressionError(AUFaceError, ValueError):
    """An expression label that is not one of :data:`EXPRESSIONS` (or a synonym)."""


def parse_expression(name: str) -> str:
    """The canonical expression of a label in any case or spelling (``"HAPPY"`` -> ``"happiness"``)."""
    key = str(name).strip().lower()
    key = EXPRESSION_SYNONYMS.get(key, key)
    if key not in EXPRESSION_AUS:
        raise UnknownExpressionError(f"unknown expression {name!r}: expected one of {', '.join(EXPRESSIONS)}")
    return key


def weak_au_labels(expression: str, aus: Sequence[int]) -> list[int]:
    """Weak labels of ``aus`` for a face showing ``expression``: 1 (belongs), 0 (incompatible), -1 (unknown)."""
    present, absent = EXPRESSION_AUS[parse_expression(expression)]
    return [1 if au in present else 0 if au in absent else -1 for au in aus]
