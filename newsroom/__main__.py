"""`python -m newsroom` runs the command line."""

from newsroom.cli.console import main

main()
