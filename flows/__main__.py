"""`python -m flows`: the command line (it lives in `cli/`)."""

from cli.app import app

if __name__ == "__main__":
    app()
