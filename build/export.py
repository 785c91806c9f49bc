#!/usr/bin/env python
"""Build stage entry point: `python build/export.py --help` (same as `python -m rtmo.build.export`)."""

from rtmo.build.export import main

if __name__ == "__main__":
    raise SystemExit(main())
