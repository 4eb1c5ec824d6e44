import sys

from edvr_vs.train.loop import main

sys.exit(main())
