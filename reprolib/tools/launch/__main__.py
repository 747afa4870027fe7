"""``python -m reprolib.tools.launch launch|status ...`` (the same as ``reprolib launch``)."""

import sys

from reprolib.tools.launch.commands import main

sys.exit(main())
