"""``python -m ferreport``: the same command line as ``ferreport``."""

from .cli import main

main(prog_name="ferreport")
