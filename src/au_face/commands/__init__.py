"""Non-training subcommands of ``au-face``; each module has ``add_arguments`` and ``run``."""

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value
