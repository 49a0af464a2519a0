"""`python -m sipedge` is the `sipedge` command."""

import sys

from .cli import main

sys.exit(main())
