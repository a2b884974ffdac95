"""Data preparation stages: corpus cleaning, vocab building, pretraining records."""
