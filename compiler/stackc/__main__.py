import sys

from stackc.cli import main

sys.exit(main())
