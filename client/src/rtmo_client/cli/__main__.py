"""``python -m rtmo_client.cli``."""

import sys

from rtmo_client.cli import main

sys.exit(main())
