"""`python -m latentlab` is the `latentlab` command (lessons 02, 07 and 08 name its commands)."""

import sys

from latentlab.cli import main

sys.exit(main())
