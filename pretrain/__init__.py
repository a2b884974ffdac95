"""ELECTRA replaced-token-detection pretraining in TensorFlow 2, and export to Hugging Face."""
