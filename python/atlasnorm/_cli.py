"""The ``atlasnorm`` console script: the command line, run in this process by the extension."""

import sys

from . import _core


def main() -> None:
    sys.exit(_core.cli_main(["atlasnorm", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
