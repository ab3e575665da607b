"""``python -m convvit.cli``: the ``convvit`` command."""
import sys

from convvit.cli import main

sys.exit(main())
