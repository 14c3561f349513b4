"""`python -m kumoclient`."""

import sys

from kumoclient.cli import main

sys.exit(main())
