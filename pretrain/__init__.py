"""ELECTRA replaced-token-detection pretraining in TensorFlow 2, and export to Hugging Face."""

from foundation.errors import quiet_tensorflow as _quiet_tensorflow

_quiet_tensorflow()  # every pretrain module needs TensorFlow; import it once, without the start-up notices
