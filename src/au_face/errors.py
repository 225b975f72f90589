"""Exception base class: the CLI turns these into a one-line message and exit code 2."""


class AUFaceError(Exception):
    """Base class of every error au_face raises for bad input or missing assets."""
