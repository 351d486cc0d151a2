"""`python -m nst_cli` is the same as the `nst` command."""

from .cli import main

main()
