"""`python -m avsrctl ...`, also the entry point for `torchrun -m avsrctl train ...`."""

from avsrctl.cli.main import main

if __name__ == "__main__":
    main()
