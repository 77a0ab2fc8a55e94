"""The performance suite (same as ``convgrad bench``); see convgrad/bench.py.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench.py --compare torch --json out.json
"""

import sys

from convgrad.bench import main

sys.exit(main())
