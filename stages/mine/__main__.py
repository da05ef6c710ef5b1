"""``python -m stages.mine --worker``: the mining worker process the mine flow starts."""
import sys

from .workers import worker_main

if sys.argv[1:] == ["--worker"]:
    worker_main()
else:
    print("usage: python -m stages.mine --worker   (used by the mine flow)", file=sys.stderr)
    sys.exit(2)
