"""TensorFlow and Keras, imported once without TensorFlow's start-up notices.

    from foundation.quiet_tf import keras, tf

Every project module takes them from here instead of `import tensorflow` or `import keras` (which
imports TensorFlow), so whichever imports them first hides the notices, and a module that does not
need them (a `--help`, the probe) never imports them. TF 2.21 prints its oneDNN/CUDA notices through
absl before its log level applies, so `TF_CPP_MIN_LOG_LEVEL` alone does not hide them: stderr is
captured while TensorFlow is imported and its devices listed (a machine without a GPU driver logs a
`cuInit` error there), and everything but the known notices is written back.
"""
from __future__ import annotations

import os
import sys
import tempfile

_NOTICES = (b"absl::InitializeLog", b"oneDNN custom operations", b"cudart_stub", b"cuda drivers",
            b"computation placer", b"cuFFT", b"cuDNN", b"cuBLAS", b"TF-TRT", b"rebuild TensorFlow",
            b"This TensorFlow binary is optimized", b"Unable to register", b"failed call to cuInit")


def _import_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        import keras
        import tensorflow

        return tensorflow, keras
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras
            import tensorflow

            tensorflow.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().splitlines(keepends=True):
                if not any(n in line for n in _NOTICES):
                    sys.stderr.buffer.write(line)
            sys.stderr.flush()
    return tensorflow, keras


tf, keras = _import_quietly()
