"""`python -m pipelines` is the same as the `inference-optimizer` command."""

import sys

from pipelines.cli import main

sys.exit(main())
