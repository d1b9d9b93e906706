"""What a command handler gets: its parsed options, the stubs, the look-up cache and the printer."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from jobworkerp.cli.client.lookup import Lookup
from jobworkerp.cli.client.output import Output
from jobworkerp.client.connection import Services


@dataclass
class Context:
    args: argparse.Namespace
    services: Services
    lookup: Lookup
    out: Output
