#!/usr/bin/env python
"""Build stage entry point: `python build/assemble.py --help` (same as `python -m rtmo.build.assemble`)."""

from rtmo.build.assemble import main

if __name__ == "__main__":
    raise SystemExit(main())
