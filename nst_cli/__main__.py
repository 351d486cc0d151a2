"""`python -m nst_cli` is the same as the `nst` command."""

from nst_cli.cli import main

main()
