"""``python -m jwdask``: the jwdask command line."""

from jwdask.cli import entry

entry()
