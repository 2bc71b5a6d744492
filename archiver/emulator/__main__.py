"""``python -m archiver.emulator [--port N] [--fault-flags ...]``."""

from archiver.emulator.cli import main

if __name__ == "__main__":
    main()
