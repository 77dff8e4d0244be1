# SPDX-License-Identifier: Apache-2.0
"""``python3 -m bmops_backup``: the same as the bmops-backup launcher."""

import sys

sys.dont_write_bytecode = True

from .cli import main  # noqa: E402 - after switching bytecode writing off

sys.exit(main())
