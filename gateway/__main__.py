"""`python -m gateway`: the same command line as `gateway` (gateway.app.cli)."""
import sys

from gateway.app.cli import main

sys.exit(main())
