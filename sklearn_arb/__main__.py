"""``python -m sklearn_arb``: the ``sklearn-arb`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
