#!/usr/bin/env python
"""Build stage entry point: `python build/engine.py --help` (same as `python -m rtmo.build.engine`)."""

from rtmo.build.engine import main

if __name__ == "__main__":
    raise SystemExit(main())
