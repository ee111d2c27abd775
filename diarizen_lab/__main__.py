import sys

from diarizen_lab.cli import main

sys.exit(main())
