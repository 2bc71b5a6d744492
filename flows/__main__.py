"""`python -m flows`: the command line, which lives in `cli/` (`cli.main`)."""

from cli.main import main

if __name__ == "__main__":
    main()
