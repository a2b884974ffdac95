"""Training: the input pipeline, the trainer loop, optimisers, strategies, checkpoints and the electra-pretrain CLI."""
