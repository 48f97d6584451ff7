"""`python -m app` runs the same CLI as the `mlsys` console script."""

from app.cli import main

main()
