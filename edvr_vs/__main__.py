import sys

from edvr_vs.cli import main

sys.exit(main())
