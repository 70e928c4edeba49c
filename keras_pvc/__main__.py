"""`python -m keras_pvc ...`: the `keras-pvc` command line."""

import sys

from keras_pvc.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
