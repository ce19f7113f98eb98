"""Using a trained model from Python: ``aelightning.load_model(path)``.

The checkpoint is read weights-only (pickled objects are refused, as by the commands) and the
model is rebuilt from the config ``ae-train`` stored in it. What comes back is a
:class:`TrainedAutoencoder`: the trained module in eval mode plus the few calls a user needs,
all without gradients::

    model = aelightning.load_model("outputs/<run>/checkpoints/last.ckpt")
    x = model.preprocess(["cat.png", "dog.jpg"])   # files, PIL images or uint8 arrays
    codes = model.encode(x)                         # [N, *code_shape]
    x_hat = model.reconstruct(x)                    # [N, C, H, W] in the model's range

Images are turned into the model's input the way the training data was: decoded to RGB (alpha
on white, 16-bit scaled), resized to the trained size with the run's ``data.resize``
(``center_crop`` unless the run said ``stretch``) and made grey for a one-channel model. A net
that pads (VGG on 28x28) pads inside the model, so nothing else is needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from aelightning.checkpointing.checkpoint import load_model_from_checkpoint
from aelightning.data.decode import RESIZE_MODES, crop_box, decode_image, to_rgb
from aelightning.errors import ConfigError, DataError
from aelightning.evaluation.analysis import seeded, to_unit_float
from aelightning.models.base import AutoencoderModule

#: what :meth:`TrainedAutoencoder.preprocess` accepts as one image
ImageLike = str | os.PathLike | Image.Image | np.ndarray
#: objectives with a prior to sample from (``sample(n)``)
GENERATIVE = ("vae", "aae")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedAutoencoder:
    """The model trained into checkpoint ``path``, in eval mode on ``device``.

    Raises :class:`~aelightning.errors.CheckpointError` (one sentence) for a missing, corrupt or
    unsafe file, or one that ``ae-train`` did not write.
    """
    module = load_model_from_checkpoint(path, map_location="cpu")
    return TrainedAutoencoder(module).to(device)


def grey(rgb: np.ndarray) -> np.ndarray:
    """``[3, H, W]`` uint8 RGB -> ``[1, H, W]`` luma, as PIL's ``convert("L")`` (ITU-R 601-2).

    A grey image stored as RGB comes back exactly (the weights sum to 1)."""
    r, g, b = (rgb[i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)[None]


def fit_pil(img: Image.Image, image_size: int, resize: str) -> np.ndarray:
    """A PIL image as ``[3, S, S]`` uint8 RGB, resized as :func:`decode_image` does a file."""
    rgb = to_rgb(img)
    out = rgb.resize(
        (image_size, image_size), Image.Resampling.BICUBIC, box=crop_box(*rgb.size, resize)
    )
    return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)


def array_to_pil(array: np.ndarray) -> Image.Image:
    """A uint8 ``H x W`` (grey) or ``H x W x C`` (C = 1, 3 or 4) array as a PIL image."""
    if array.dtype != np.uint8:
        raise DataError(
            f"preprocess takes uint8 arrays (0..255), got {array.dtype}; for float images in "
            "[0, 1] pass a tensor [N, C, H, W] straight to encode/reconstruct."
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(array))
    raise DataError(
        f"a uint8 image array must be H x W or H x W x C (C = 1, 3 or 4), got shape "
        f"{tuple(array.shape)}."
    )


class ChannelError(DataError):
    """A colour image for a model trained on grey images, where converting was not allowed."""


class TrainedAutoencoder(nn.Module):
    """A trained autoencoder ready for inference (see the module docstring).

    ``module`` is the :class:`~aelightning.models.base.AutoencoderModule` itself, ``config`` the
    training run's resolved config and ``input_shape`` its ``(C, H, W)``. Calling the object is
    :meth:`reconstruct`. Tensors passed in may be float in [0, 1] or uint8 in 0..255, on any
    device; results are float32 on the model's device.
    """

    def __init__(self, module: AutoencoderModule) -> None:
        super().__init__()
        self.module = module.eval()
        self.config: dict[str, Any] = dict(module.run_config or {})
        self.input_shape: tuple[int, int, int] = tuple(module.net.input_shape)  # type: ignore[assignment]
        data = self.config.get("data") or {}
        self.resize = str(data.get("resize") or "center_crop")
        self.objective = str(type(module).config_name)
        self.eval()

    def train(self, mode: bool = True) -> TrainedAutoencoder:
        """Stays in eval mode: this object is for inference (train the module itself)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.module.device

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape (without batch) of what :meth:`decode` takes."""
        return tuple(self.module.net.latent_shape)

    # ---------------------------------------------------------------------------- input
    def preprocess(
        self, images: ImageLike | Sequence[ImageLike], resize: str | None = None
    ) -> Tensor:
        """Files, PIL images or uint8 arrays -> the model's input ``[N, C, H, W]`` in [0, 1].

        ``resize`` overrides the run's ``center_crop`` / ``stretch``. Non-square images and any
        size are accepted; a file that cannot be read raises ``DataError`` naming it.
        """
        mode = resize or self.resize
        if mode not in RESIZE_MODES:
            raise ConfigError(f"resize={mode!r} is unknown; use {' or '.join(RESIZE_MODES)}.")
        items = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else images
        if isinstance(images, np.ndarray):
            items = list(images) if images.ndim == 4 else [images]
        rows = [self.image_to_array(item, mode) for item in items]
        if not rows:
            raise DataError("preprocess got no images.")
        return to_unit_float(torch.from_numpy(np.stack(rows)), self.device)

    def image_to_array(
        self, image: ImageLike, resize: str | None = None, to_grey: bool = True
    ) -> np.ndarray:
        """One image as the model's ``[C, H, W]`` uint8 input (before scaling to [0, 1]).

        A grey image fed to a colour model is repeated over RGB, as the training data was. A
        colour image fed to a one-channel model becomes its luma, or with ``to_grey=False``
        raises :class:`ChannelError`.
        """
        channels, height, width = self.input_shape
        if height != width:
            raise ConfigError(
                f"the model takes {height}x{width} images; preprocess makes square images only."
            )
        mode = resize or self.resize
        if isinstance(image, (str, os.PathLike)):
            try:
                rgb = decode_image(image, height, mode)
            except FileNotFoundError:
                raise DataError(f"image file '{image}' does not exist.") from None
            except Exception as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise DataError(f"'{image}' is not a readable image ({reason}).") from None
        elif isinstance(image, Image.Image):
            rgb = fit_pil(image, height, mode)
        elif isinstance(image, np.ndarray):
            rgb = fit_pil(array_to_pil(image), height, mode)
        else:
            raise DataError(
                f"preprocess takes file paths, PIL images or uint8 arrays, got "
                f"{type(image).__name__}."
            )
        if channels == 3:
            return rgb
        if not to_grey and not (np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[1], rgb[2])):
            raise ChannelError(
                f"'{image}' is a colour image but the model was trained on one-channel (grey) "
                "images; convert it with to_grey=true or pass grey images."
            )
        return grey(rgb)

    def as_input(self, x: Tensor | ImageLike | Sequence[ImageLike]) -> Tensor:
        """A batch ``[N, C, H, W]`` (uint8 or float) checked against the model, else
        :meth:`preprocess` of files / images / arrays."""
        if not isinstance(x, Tensor):
            return self.preprocess(x)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"the model takes images of shape {list(self.input_shape)} (C, H, W), got "
                f"{list(x.shape[1:])}; use preprocess() to resize files or arrays."
            )
        return to_unit_float(x, self.device)

    # ------------------------------------------------------------------------ the model
    @torch.no_grad()
    def encode(self, x: Tensor | ImageLike | Sequence[ImageLike]) -> Tensor:
        """The codes ``[N, *code_shape]`` (a VAE's posterior mean)."""
        return self.module.encode(self.as_input(x)).float()

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Images ``[N, C, H, W]`` decoded from codes ``[N, *latent_shape]``.

        A SegNet-VGG decoder without its encoder pass has no pooling switches and unpools to
        each window's top-left (see :mod:`aelightning.nets.vgg`)."""
        if z.dim() == len(self.latent_shape):
            z = z.unsqueeze(0)
        if tuple(z.shape[1:]) != self.latent_shape:
            raise DataError(
                f"the decoder takes codes of shape {list(self.latent_shape)}, got "
                f"{list(z.shape[1:])}."
            )
        return self.module.net.decode(z.to(self.device).float()).float()

    @torch.no_grad()
    def reconstruct(self, x: Tensor | ImageLike | Sequence[ImageLike]) -> Tensor:
        """The deterministic reconstruction of ``x`` (no corruption; a VAE decodes its mean)."""
        return self.module(self.as_input(x)).float()

    def denoise(self, x: Tensor | ImageLike | Sequence[ImageLike]) -> Tensor:
        """:meth:`reconstruct` under the name denoising-AE users look for: pass noisy images."""
        return self.reconstruct(x)

    forward = reconstruct

    @torch.no_grad()
    def corrupt(self, x: Tensor | ImageLike | Sequence[ImageLike]) -> Tensor:
        """``x`` with the run's training corruption applied (unchanged if it had none)."""
        return self.module.noise(self.as_input(x))

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """``n`` images decoded from the prior (``model=vae`` or ``model=aae`` only)."""
        if not callable(getattr(self.module, "sample", None)):
            raise ConfigError(
                f"model={self.objective} has no prior to sample from; sampling needs a "
                f"{' or '.join(GENERATIVE)} checkpoint."
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"the number of samples must be an integer >= 1, got {n!r}.")
        if seed is None:
            return self.module.sample(n).float()
        with seeded(seed, self.device):
            return self.module.sample(n).float()

    def extra_repr(self) -> str:
        return f"objective={self.objective}, input_shape={list(self.input_shape)}"
