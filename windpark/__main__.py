import sys

from windpark.cli import main

sys.exit(main())
