"""The ``au-face`` command: LightningCLI subcommands plus reconstruct/preprocess/masks/geometry/evaluate/frames.

Only what a subcommand needs is imported (torch, Lightning and MediaPipe take seconds), so
``au-face --help`` and argument errors are quick. Run from the shell, the non-training subcommands
end the process without the interpreter's teardown (:func:`exit_now`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from au_face.errors import AUFaceError, PendingSignal, Terminated

#: non-training subcommands → module in ``au_face.commands``
COMMANDS = {
    "reconstruct": "Reconstruct a video: coarse meshes, AU-aware refinement, CSV, overlay.",
    "preprocess": "Run the coarse reconstructor over videos into a resumable cache.",
    "masks": "Build and draw the AU vertex masks of a topology.",
    "geometry": "Build a face geometry (masks, expression basis, neutral estimator) as a hashed .npz.",
    "evaluate": "Per-AU F1 tables over dataset folds.",
    "frames": "Encode folders of numbered frames (BP4D, Multiface) as videos for preprocess.",
}


#: Environment defaults of ``au-face reconstruct`` run from the shell, set before NumPy loads (the user's
#: own settings win). It tracks faces on one core and does everything else on the other; OpenBLAS's
#: worker threads spin while they wait for work, which cost 1.9 s of CPU on a 472-frame clip here,
#: so matrix products run on the thread that asks for them. OpenCV's own thread pool likewise: the
#: overlay already draws on two threads of its own, and OpenCV splitting each colour conversion and
#: drawing call over both cores cost 0.3 s more CPU on the same clip than one thread a call.
RECONSTRUCT_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENCV_FOR_THREADS_NUM": "1"}


def run_command(name: str, argv: Sequence[str], fresh_process: bool = False) -> int:
    """A non-training subcommand: its module's ``add_arguments`` and ``run``. ``args.fresh_process``
    tells ``run`` whether this process was started for the command (from the shell), so it may fork."""
    if fresh_process and name == "reconstruct" and "numpy" not in sys.modules:
        for key, value in RECONSTRUCT_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
    module = importlib.import_module(f"au_face.commands.{name}")
    parser = argparse.ArgumentParser(prog=f"au-face {name}", description=COMMANDS[name])
    module.add_arguments(parser)
    parser.set_defaults(fresh_process=fresh_process)
    return int(module.run(parser.parse_args(list(argv))))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Bad input and missing assets print one clear line and exit 2.

    Set ``AU_FACE_DEBUG=1`` to see the full traceback instead.
    """
    from_shell = argv is None
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with signals_as_interrupt():
            if not args or args[0] in ("-h", "--help"):
                _print_help()
                return 0 if args else 2
            if args[0] not in COMMANDS:
                from au_face.commands.lightning import run_lightning

                return run_lightning(None if from_shell else args)
            code = run_command(args[0], args[1:], fresh_process=from_shell)
    except Exception as err:
        cause = user_error(err)
        if cause is None or os.environ.get("AU_FACE_DEBUG"):
            raise
        print(f"au-face: error: {cause}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated)
        print(f"au-face: {'terminated' if terminated else 'interrupted'}{RESUME.get(args[0], '')}", file=sys.stderr)
        code = 143 if terminated else 130
    if from_shell and args and args[0] in COMMANDS:
        exit_now(code)
    return code


#: what to tell about resuming a subcommand that was interrupted
RESUME = {"preprocess": "; run the same command again to resume (finished videos are kept)"}


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM (``kill``, a job scheduler, a closing container) raises
    :class:`~au_face.errors.Terminated`, a ``KeyboardInterrupt``, so the clean-up of Ctrl-C runs;
    both signals are kept in :class:`~au_face.errors.PendingSignal` in case their exception is lost.
    A SIGINT the shell set to be ignored (a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        PendingSignal.caught = signum
        raise Terminated("SIGTERM") if signum == signal.SIGTERM else KeyboardInterrupt

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        PendingSignal.caught = None


#: errors of the system, not of au_face: reported in one line (no space left, permission denied)
SYSTEM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


def exit_now(code: int) -> NoReturn:
    """End the process at once with ``code``, skipping the interpreter's teardown.

    Finalising the thousands of modules torch and Lightning import takes about 1.5 s; a
    subcommand's files are all closed (and published) when it returns, so only the standard
    streams and logging need flushing. Also ends daemon threads still loading a model.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or gone (a broken pipe): nothing more to say
            pass
    os._exit(code)


def user_error(err: BaseException) -> AUFaceError | None:
    """The :class:`AUFaceError` behind ``err`` (LightningCLI/jsonargparse wrap errors raised
    while instantiating classes), or one for a full disk or a denied permission; None for a bug."""
    seen: set[int] = set()
    stack: list[BaseException] = [err]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, AUFaceError):
            return current
        if isinstance(current, OSError) and current.errno in SYSTEM_ERRNOS:
            where = f"{current.filename}: " if current.filename else ""
            return AUFaceError(f"{where}{current.strerror or os.strerror(current.errno)}")
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
        stack += [e for e in getattr(current, "exceptions", []) if isinstance(e, BaseException)]
    return None


def _print_help() -> None:
    print("usage: au-face {fit,validate,test,predict,reconstruct,preprocess,masks,geometry,evaluate,frames} ...\n")
    print("  fit|validate|test|predict  train and evaluate with LightningCLI (--config configs/*.yaml; fit --help)")
    for name, text in COMMANDS.items():
        print(f"  {name:<26} {text}")
    print()


if __name__ == "__main__":
    sys.exit(main())
