"""``python -m vastnb``: the ``vastnb`` command."""

from vastnb.front.cli import main

raise SystemExit(main())
