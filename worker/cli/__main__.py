"""``python -m worker.cli``: the same as the ``rotator`` command."""

from worker.cli.main import main

main()
