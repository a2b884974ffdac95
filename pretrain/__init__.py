"""ELECTRA replaced-token-detection pretraining in TensorFlow 2, and export to Hugging Face."""

import sys as _sys

from foundation.errors import quiet_tensorflow as _quiet_tensorflow

# Every pretrain module needs TensorFlow: import it once, without the start-up notices. Not for a
# `--help`, which parses flags only and would wait 5 s for TensorFlow (the console scripts
# electra-pretrain and electra-export start here).
if not {"-h", "--help"} & set(_sys.argv[1:]):
    _quiet_tensorflow()
