"""``python -m testbed.cli``: the ``flowerbed`` command line."""

from testbed.cli import main

main()
