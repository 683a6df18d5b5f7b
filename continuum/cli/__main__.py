import sys

from continuum.cli import main

sys.exit(main())
