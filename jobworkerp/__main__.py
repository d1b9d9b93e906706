"""`python -m jobworkerp all-in-one` runs the server."""

import sys

from jobworkerp.cli.server import main

sys.exit(main())
