"""`python -m newsroom` runs the command line."""

from newsroom.console import main

main()
