"""A module that takes far too long to import (start-up timeout test)."""

import time

time.sleep(30)
