"""Running the pipeline on Google Cloud: Cloud Storage transfers and the TPU VM preflight doctor."""
