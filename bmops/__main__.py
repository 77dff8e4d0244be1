# SPDX-License-Identifier: Apache-2.0
"""``python -m bmops``: see :mod:`bmops.cli`."""

import sys

from bmops.cli import main

sys.exit(main())
