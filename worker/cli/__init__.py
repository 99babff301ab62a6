"""The `rotator` command line (Typer + Rich)."""
