"""`python -m alabel_client ...`: the `alabel` command line."""

from .cli import main

raise SystemExit(main())
