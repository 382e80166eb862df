"""``python -m torch_cnn`` is the ``torch-cnn`` command."""

from torch_cnn.cli import main

raise SystemExit(main())
