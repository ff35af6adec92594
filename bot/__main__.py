"""`python -m bot` is the same as the `slack-assistants` command."""

import sys

from bot.cli import main

sys.exit(main())
