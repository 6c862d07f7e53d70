"""``python -m speechalign.cli`` (torchrun ``-m speechalign.cli train ...``)."""

import sys

from speechalign.cli import main

sys.exit(main())
