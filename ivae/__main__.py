import sys

from ivae.cli import main

sys.exit(main())
