"""What the segmenter takes and gives, without Keras: a worker that runs the network in ONNX
Runtime imports this, not the model code (and so never loads TensorFlow)."""

from __future__ import annotations

from inference.labels import Sequence, TumorLabel

ARCHITECTURE = "efficientnetv2b0-attention-unet"
CHANNELS: tuple[Sequence, ...] = (Sequence.T1, Sequence.T1C, Sequence.T2, Sequence.FLAIR)
CLASSES: tuple[int, ...] = (0, int(TumorLabel.NCR), int(TumorLabel.ED), int(TumorLabel.ET))
STRIDE = 32  # the encoder halves the slice five times
