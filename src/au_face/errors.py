"""Exception base class (the CLI turns these into a one-line message and exit code 2) and warnings."""


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
    :func:`au_face.cli.sigterm_as_interrupt`), so it is cleaned up after like Ctrl-C.

    ``pending`` stays True once the signal came: long loops check it between steps, in case the
    exception was raised where Python ignores exceptions (in a ``__del__``)."""

    pending = False
