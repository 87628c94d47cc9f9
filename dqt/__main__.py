import sys

from dqt.cli import main

sys.exit(main())
