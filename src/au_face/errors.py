"""Exception base class: the CLI turns these into a one-line message and exit code 2."""


class AUFaceError(Exception):
    """Base class of every error au_face raises for bad input or missing assets."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a ``KeyboardInterrupt`` by the ``au-face`` command (see
    :func:`au_face.cli.sigterm_as_interrupt`), so it is cleaned up after like Ctrl-C."""
