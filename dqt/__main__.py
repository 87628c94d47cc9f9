from dqt.cli import main
import sys

sys.exit(main())
