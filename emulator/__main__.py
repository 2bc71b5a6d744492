"""``python -m emulator [--port N] [--fault-flags ...]``."""

from emulator.cli import main

if __name__ == "__main__":
    main()
