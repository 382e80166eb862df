"""``python -m benchmarks [options]``: the same run as ``torch-cnn bench [options]``."""

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
