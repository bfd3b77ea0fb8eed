"""`python -m gateway`: the same command line as `gateway` (gateway.cli)."""
import sys

from gateway.cli import main

sys.exit(main())
