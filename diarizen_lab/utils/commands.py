"""Running the steps of a recipe: each command is printed before it runs, and a failure stops the recipe."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path


def run_logged(*command: str | Path) -> None:
    """Print and run a command; exit with its status if it fails."""
    words = [str(word) for word in command]
    print("+", shlex.join(words), flush=True)
    result = subprocess.run(words)
    if result.returncode != 0:
        sys.exit(result.returncode)


def run_cli(*args: str | Path) -> None:
    """Run ``diarizen-lab ARGS`` with this interpreter (see :func:`run_logged`)."""
    run_logged(sys.executable, "-m", "diarizen_lab", *args)
