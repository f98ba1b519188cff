"""``atlasnorm.normalize(input, output, **options)``: the CLI's file-to-file job in-process."""

from __future__ import annotations

import os

from . import _core


def _argv(input, output, options: dict) -> list[str]:
    argv = ["atlasnorm", "normalize", os.fspath(input), os.fspath(output), "--quiet"]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if key == "log1p":
            if value is False:
                argv.append("--no-log1p")
            continue
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        else:
            argv += [flag, repr(value) if isinstance(value, float) else str(value)]
    return argv


def normalize(input, output, **options) -> str:
    """Normalizes INPUT into OUTPUT exactly as ``atlasnorm normalize INPUT OUTPUT`` does,
    options as keyword arguments named like the flags (``target_sum=1e4``,
    ``exclude_highly_expressed=True``, ``memory="2GiB"``, ``log1p=False``, ``force=True``, ...).
    Returns the run's report; raises ValueError with the command line's message."""
    return _core.normalize_files(_argv(input, output, options))
