"""``python -m labelgate``: the ``labelgate`` command."""

from labelgate.guard.cli import main

main()
