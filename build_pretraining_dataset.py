"""Writes text data as TFRecords that ELECTRA can be pre-trained on (the original's flags).

Thin entry point; see `data_prep/build.py` and docs/build_pretraining_dataset.md.
"""
from data_prep.build import cli

if __name__ == "__main__":  # guard: worker processes are spawned and re-import this module
    cli()
