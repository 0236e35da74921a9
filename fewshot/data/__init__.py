"""Audio data: datasets, decoding, spectrograms, the on-disk cache and the n-shot sampler."""
