"""``python -m attune.cli``: the ``attune`` command."""

from attune.cli import main

raise SystemExit(main())
