"""``python -m taskgate``: the same command line as the ``taskgate`` script."""

from taskgate.cli import main

if __name__ == "__main__":
    main()
