"""The segmenter: an EfficientNetV2 encoder and a U-Net decoder with additive attention gates.

Input: axial slices (batch, y, x, channels) of a prepared visit, channels = the four z-scored
sequences in ``CHANNELS`` order. Output: per-pixel probabilities of the four classes in
``CLASSES`` order (softmax, float32). Height and width must be multiples of ``STRIDE``.

Only ``keras``, ``keras.layers`` and ``keras.ops``: the backend is whatever ``KERAS_BACKEND``
says (TensorFlow here, JAX on the GPU machine), never chosen in code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
from keras import layers, ops

from inference.segmentation.contract import ARCHITECTURE, CHANNELS, CLASSES, STRIDE

__all__ = ["ARCHITECTURE", "CHANNELS", "CLASSES", "STRIDE", "ModelConfig", "build_model"]

# EfficientNetV2-B0 layers whose outputs feed the decoder, from stride 2 to stride 32.
_SKIPS = (
    "block1a_project_activation",  # 1/2, 16 channels
    "block2b_add",  # 1/4, 32
    "block3b_add",  # 1/8, 48
    "block5e_add",  # 1/16, 112
)
_BOTTOM = "block6h_add"  # 1/32, 192


@dataclass(frozen=True)
class ModelConfig:
    """What the weights belong to; saved in the model card and checked when loading."""

    architecture: str = ARCHITECTURE
    channels: int = len(CHANNELS)
    classes: int = len(CLASSES)
    decoder_filters: tuple[int, ...] = (128, 64, 40, 24)

    def as_dict(self) -> dict[str, object]:
        return {
            "architecture": self.architecture,
            "channels": self.channels,
            "classes": self.classes,
            "decoder_filters": list(self.decoder_filters),
        }


def conv_block(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    """Two 3x3 depthwise-separable convolutions, each with batch normalisation and swish
    (separable: a third of the time of full convolutions at the full-resolution levels)."""
    for i in (1, 2):
        x = layers.SeparableConv2D(
            filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}"
        )(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("swish", name=f"{name}_act{i}")(x)
    return x


def attention_gate(
    skip: keras.KerasTensor, gating: keras.KerasTensor, filters: int, name: str
) -> keras.KerasTensor:
    """Additive attention (Oktay et al. 2018): weigh each skip pixel by how relevant the coarser
    decoder signal says it is, sigmoid(psi(relu(W_x skip + W_g gating))) in [0, 1]."""
    theta = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_theta")(skip)
    phi = layers.Conv2D(filters, 1, name=f"{name}_phi")(gating)
    joint = layers.Activation("relu", name=f"{name}_relu")(
        layers.Add(name=f"{name}_add")([theta, phi])
    )
    weight = layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_psi")(joint)
    return layers.Multiply(name=f"{name}_gate")([skip, weight])


def up_block(
    x: keras.KerasTensor, skip: keras.KerasTensor, filters: int, name: str
) -> keras.KerasTensor:
    """Upsample by two, gate the skip connection with attention, concatenate, convolve."""
    x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
    gated = attention_gate(skip, x, max(filters // 2, 8), f"{name}_att")
    x = layers.Concatenate(name=f"{name}_concat")([x, gated])
    return conv_block(x, filters, name)


def refine(coarse: keras.KerasTensor, image: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """Full resolution at little cost: the half-resolution logits, upsampled, corrected by a
    small convolution that also sees the input slices (thin enhancing rims stay sharp)."""
    up = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(coarse)
    x = layers.Concatenate(name=f"{name}_concat")([up, image])
    x = layers.Conv2D(16, 3, padding="same", activation="swish", name=f"{name}_conv1")(x)
    x = layers.Conv2D(coarse.shape[-1], 3, padding="same", name=f"{name}_conv2")(x)
    return layers.Add(name=f"{name}_add")([up, x])


def build_model(config: ModelConfig | None = None) -> keras.Model:
    """The segmenter for slices of any size that is a multiple of ``STRIDE``.

    >>> model = build_model()
    >>> model.output_shape
    (None, None, None, 4)
    """
    config = config or ModelConfig()
    if len(config.decoder_filters) != len(_SKIPS):
        raise ValueError(f"decoder_filters needs {len(_SKIPS)} entries")
    with warnings.catch_warnings():
        # Keras notes that ImageNet models take 1 or 3 channels; ours is trained on 4 from scratch.
        warnings.filterwarnings("ignore", message="This model usually expects")
        encoder = keras.applications.EfficientNetV2B0(
            include_top=False,
            weights=None,
            input_shape=(None, None, config.channels),
            include_preprocessing=False,
        )
    skips = [encoder.get_layer(name).output for name in _SKIPS]
    x = encoder.get_layer(_BOTTOM).output
    for level, filters in enumerate(config.decoder_filters):
        x = up_block(x, skips[-1 - level], filters, f"decoder{level}")
    coarse = layers.Conv2D(config.classes, 1, name="coarse_logits")(x)
    logits = refine(coarse, encoder.input, name="refine")
    probabilities = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(encoder.input, probabilities, name=config.architecture)


def dice_ce_loss(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
    """Cross-entropy plus soft Dice over the three tumour classes (one-hot ``y_true``).

    Dice is computed over the whole batch per class, so a batch without a class adds no
    gradient noise for it beyond the smoothing term.
    """
    y_pred = ops.clip(y_pred, 1e-7, 1.0)
    cross_entropy = -ops.mean(ops.sum(y_true * ops.log(y_pred), axis=-1))
    axes = (0, 1, 2)
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    dice = (2.0 * intersection + 1.0) / (total + 1.0)
    return cross_entropy + 1.0 - ops.mean(dice[1:])
