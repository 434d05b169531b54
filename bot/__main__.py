"""`python -m bot` is `nudge`."""

from bot.cli import main

raise SystemExit(main())
