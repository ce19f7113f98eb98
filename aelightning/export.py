"""Export a trained model for use outside this package: ONNX or TorchScript, one part at a time.

``part`` is ``encoder`` (images -> codes; a VAE's posterior mean), ``decoder`` (codes -> images;
a SegNet-VGG decoder without its encoder pass unpools to each window's top-left) or
``autoencoder`` (images -> reconstructions, the VGG pooling switches passed inside the graph).
The batch dimension stays dynamic. Every export is checked against PyTorch at two batch sizes
(onnxruntime for ONNX, ``torch.jit.load`` for TorchScript) and the largest absolute difference is
recorded in the JSON written beside the file, with what a user must feed it: input shape, value
range and the preprocessing the training data had.

ONNX needs the optional extra ``pip install 'aelightning[onnx]'`` (onnx, onnxscript for torch's
exporter, onnxruntime for the check).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aelightning.api import TrainedAutoencoder
from aelightning.checkpointing.atomic import write_json
from aelightning.errors import ConfigError

log = logging.getLogger("aelightning")

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
PARTS = ("encoder", "decoder", "autoencoder")
#: ONNX opset of the exported graphs (MaxUnpool, dynamic shapes: all there since 11)
OPSET = 18
#: batch sizes the export is checked at (the traced example uses another one)
CHECK_BATCHES = (1, 3)
ONNX_MISSING = (
    "format=onnx needs the optional ONNX packages; install them with "
    "pip install 'aelightning[onnx]' (onnx, onnxscript, onnxruntime)."
)


class ModelPart(nn.Module):
    """One part of a trained module as a plain ``forward(input) -> output`` graph.

    Only the net is a submodule: the LightningModule is called (its ``encode`` / ``forward``
    say what a VAE does with its code) but not registered, since the TorchScript tracer walks
    every attribute of a registered module and a LightningModule's ``trainer`` raises outside
    a fit.
    """

    def __init__(self, model: TrainedAutoencoder, part: str) -> None:
        super().__init__()
        if part not in PARTS:
            raise ConfigError(f"part={part!r} is unknown; use {', '.join(PARTS)}.")
        self.net, self.part = model.module.net, part
        object.__setattr__(self, "owner", model.module)

    def forward(self, x: Tensor) -> Tensor:
        if self.part == "encoder":
            return self.owner.encode(x)
        if self.part == "decoder":
            return self.net.decode(x)
        return self.owner(x)


def input_shape(model: TrainedAutoencoder, part: str) -> tuple[int, ...]:
    """One input of ``part`` without the batch: ``(C, H, W)``, or the code's shape."""
    return model.latent_shape if part == "decoder" else model.input_shape


def example_batch(model: TrainedAutoencoder, part: str, n: int, seed: int = 0) -> Tensor:
    """Realistic inputs: images in [0, 1], or the codes the encoder gives for such images."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, *model.input_shape, generator=g).to(model.device)
    if part != "decoder":
        return images
    with torch.no_grad():
        return model.module.encode(images).float()


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """torch's exporters print progress and warn about their own internals: not actionable."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def export_onnx(part: ModelPart, example: Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError(ONNX_MISSING) from None
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with quiet_exporter():
        torch.onnx.export(
            part,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


@contextlib.contextmanager
def traceable_unpool() -> Iterator[None]:
    """Let ``torch.jit.trace`` through ``F.max_unpool2d`` (SegNet-VGG's decoder).

    Under tracing, torch 2.14's output-size check compares traced sizes (tensors) and raises
    ``cond must be a bool``. The sizes come from the net's own pooling and are never negative,
    so the check is skipped while tracing and restored after.
    """
    functional = torch.nn.functional
    check = getattr(functional, "_check_unpool_output_size", None)
    if check is None:
        yield
        return
    functional._check_unpool_output_size = lambda output_size, dim: None
    try:
        yield
    finally:
        functional._check_unpool_output_size = check


def export_torchscript(part: ModelPart, example: Tensor, path: Path) -> None:
    with quiet_exporter(), traceable_unpool():
        traced = torch.jit.trace(part, (example,), check_trace=False)
    traced.save(str(path))


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """``output`` of the ONNX file at ``path`` for the float32 batch ``x`` (onnxruntime, CPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(ONNX_MISSING) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]


def run_torchscript(path: str | Path, x: np.ndarray) -> np.ndarray:
    """``forward`` of the TorchScript file at ``path`` for the float32 batch ``x`` (CPU)."""
    with warnings.catch_warnings():  # torch 2.14 deprecates TorchScript in favour of export
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


RUNNERS = {"onnx": run_onnx, "torchscript": run_torchscript}


def max_abs_diff(model: TrainedAutoencoder, part: str, fmt: str, path: Path) -> float:
    """Largest ``|exported - PyTorch|`` over random batches of the sizes in CHECK_BATCHES."""
    worst = 0.0
    for i, n in enumerate(CHECK_BATCHES):
        x = example_batch(model, part, n, seed=1 + i)
        with torch.no_grad():
            expected = ModelPart(model, part)(x).float().cpu().numpy()
        got = RUNNERS[fmt](path, x.cpu().numpy())
        if got.shape != expected.shape:
            raise RuntimeError(f"the exported {part} gave shape {got.shape}, not {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def describe(model: TrainedAutoencoder, part: str, fmt: str, path: Path) -> dict[str, Any]:
    """What a user of the exported file needs to know (the JSON beside it)."""
    channels, height, width = model.input_shape
    sigmoid = getattr(model.module.net, "output_activation", "none") == "sigmoid"
    image = {
        "shape": ["batch", channels, height, width],
        "dtype": "float32",
        "range": [0.0, 1.0],
    }
    recon = dict(image, range=[0.0, 1.0] if sigmoid else "unbounded (clamp to [0, 1] to show)")
    code = {"shape": ["batch", *model.latent_shape], "dtype": "float32", "range": "unbounded"}
    inputs, outputs = {
        "encoder": (image, code),
        "decoder": (code, recon),
        "autoencoder": (image, recon),
    }[part]
    net = (model.config.get("net") or {}).get("_target_", type(model.module.net).__name__)
    return {
        "format": fmt,
        "file": path.name,
        "part": part,
        "objective": model.objective,
        "net": str(net).rsplit(".", 1)[-1],
        "input": {"name": "input", **inputs},
        "output": {"name": "output", **outputs},
        "preprocessing": {
            "layout": "NCHW",
            "channels": (
                "grey: luma 0.299 R + 0.587 G + 0.114 B (PIL convert('L'))"
                if channels == 1
                else "RGB (grey repeated, alpha composited on white)"
            ),
            "size": [height, width],
            "resize": f"{model.resize}, bicubic (aelightning.data.decode)",
            "scale": "uint8 / 255 -> [0, 1]",
        },
        "opset": OPSET if fmt == "onnx" else None,
        "torch": torch.__version__,
    }


def export_model(
    model: TrainedAutoencoder, part: str, fmt: str, path: str | Path, check: bool = True
) -> dict[str, Any]:
    """Write ``part`` of ``model`` as ``fmt`` to ``path`` and its JSON beside it (``.json``).

    Returns the JSON's content; ``check`` runs the file and records ``max_abs_diff``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is unknown; use {' or '.join(FORMATS)}.")
    wrapper = ModelPart(model, part).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = example_batch(model, part, 2)
    if fmt == "onnx":
        export_onnx(wrapper, example, path)
    else:
        export_torchscript(wrapper, example, path)
    info = describe(model, part, fmt, path)
    if check:
        info["check"] = {
            "max_abs_diff": max_abs_diff(model, part, fmt, path),
            "batch_sizes": list(CHECK_BATCHES),
            "against": "PyTorch, float32, on the model's device",
        }
    write_json(path.with_suffix(".json"), info)
    return info
