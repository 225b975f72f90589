"""Non-training subcommands of ``au-face``; each module has ``add_arguments`` and ``run``."""
