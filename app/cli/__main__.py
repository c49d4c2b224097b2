"""`python -m app.cli`: the same as the `rag` script."""

from app.cli import main

main()
