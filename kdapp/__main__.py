import sys

from kdapp.cli import main

sys.exit(main())
