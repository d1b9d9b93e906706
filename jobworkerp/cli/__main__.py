"""`python -m jobworkerp.cli ...` runs the client, same as the `jobworkerp-client` script."""

import sys

from jobworkerp.cli.client import main

sys.exit(main())
