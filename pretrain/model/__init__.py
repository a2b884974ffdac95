"""The RTD model: encoder, heads, masking, sampling and the generator/discriminator step (imports neither training nor conversion)."""
