"""``python -m hailuo.simulator --port 8123 --render-seconds 3 ...``"""

import sys

from hailuo.simulator.cli import main

sys.exit(main())
