#!/usr/bin/env python3
"""`python cli.py ...` from a checkout behaves as `nasdeploy ...`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nasdeploy.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
