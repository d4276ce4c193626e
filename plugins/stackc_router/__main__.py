import sys

from stackc_router.cli import main

sys.exit(main())
