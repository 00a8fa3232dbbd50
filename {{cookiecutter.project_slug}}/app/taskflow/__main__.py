"""`python -m app.taskflow`: the operator's command line (see cli.py)."""

from .cli import main

main()
