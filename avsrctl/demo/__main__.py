"""`python -m avsrctl.demo ARGS`: the same as `avsrctl demo ARGS` (the CLI's command and error boundary)."""

import sys

from avsrctl.cli.main import run

if __name__ == "__main__":
    sys.exit(run(["demo", *sys.argv[1:]]))
