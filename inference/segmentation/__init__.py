"""The segmenter: the network, inference on a visit, training, and the synthetic data it
learns from (phantoms, sim-to-real volumes)."""
