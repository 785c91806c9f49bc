#!/usr/bin/env python
"""All build stages: `python build/all.py --checkpoint rtmo-s_body7 --target cpu` (same as `python -m rtmo.build`)."""

from rtmo.build.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
