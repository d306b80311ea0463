"""``python -m engine``: the graylane command."""
import sys

from engine.cli.main import main

sys.exit(main())
