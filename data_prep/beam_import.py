"""Apache Beam, imported in one place: without the `beam` extra a clear error, and Beam's import-time
warning about its optional BigQuery client silenced (it would precede a stage's one error line).
"""
import logging

logging.disable(logging.WARNING)
try:
    import apache_beam as beam
    from apache_beam import pvalue
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as _exc:  # the `beam` extra
    raise ImportError("the Beam pipeline needs Apache Beam: pip install -e '.[beam]'") from _exc
finally:
    logging.disable(logging.NOTSET)

__all__ = ["beam", "pvalue", "PipelineOptions"]
