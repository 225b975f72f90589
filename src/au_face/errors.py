"""Exception base class (the CLI turns these into a one-line message and exit code 2) and warnings."""

import signal


class AUFaceError(Exception):
    """Base class of every error au_face raises for bad input or missing assets."""


class AppearanceMissingWarning(UserWarning):
    """A model with an appearance head was given frames without appearance descriptors: its covered AUs read
    the mesh alone (``au-face reconstruct`` computes the descriptors; a dataset's cache carries them
    when made with ``au-face preprocess --appearance``)."""


APPEARANCE_MISSING = (
    "the model's appearance head is not used: the frames carry no appearance descriptors "
    "(CoarseFrames.appearance), so its AUs read the mesh alone; for a dataset, cache them with "
    "`au-face preprocess --appearance` and set the DataModule's appearance: true"
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a ``KeyboardInterrupt`` by the ``au-face`` command (see
    :func:`au_face.cli.signals_as_interrupt`), so it is cleaned up after like Ctrl-C."""


class PendingSignal:
    """The SIGINT or SIGTERM the ``au-face`` command caught, kept after its exception was raised.

    Python ignores an exception raised inside a ``__del__`` (a file lock's, say), so a signal that
    lands there is lost; long loops call :meth:`reraise` between steps to stop all the same."""

    caught: int | None = None

    @classmethod
    def reraise(cls) -> None:
        """Raise the interrupt for a caught signal (:class:`Terminated` for SIGTERM); nothing if none came."""
        if cls.caught == signal.SIGTERM:
            raise Terminated("SIGTERM")
        if cls.caught is not None:
            raise KeyboardInterrupt
