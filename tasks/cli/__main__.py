"""`python -m tasks.cli`: the same as the `regnotify` console script."""

import sys

from tasks.cli.main import main

sys.exit(main())
