"""Entry point of ``python -m vmrpc`` and of the ``vmrpc`` script."""

import sys

from vmrpc.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
