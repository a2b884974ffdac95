"""Conversion: the only place that knows Hugging Face and TF1 names; export to and import from released weights."""
