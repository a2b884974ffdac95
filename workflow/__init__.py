"""The workflow above the stages: the demo pipeline, the probe, learning curves and FLOP accounting."""
