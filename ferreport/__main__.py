"""``python -m ferreport``: the same command line as ``ferreport``."""

from ferreport.cli.main import main

main(prog_name="ferreport")
