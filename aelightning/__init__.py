"""aelightning: autoencoder experiments with PyTorch Lightning and Hydra.

Where things live (each subpackage's docstring says how to add to it):

- ``models/``      objectives (LightningModules with their own loss), noise, LR schedules
- ``nets/``        architectures (plain ``nn.Module``\\ s), chosen independently of the objective
- ``data/``        LightningDataModules: MNIST / Fashion-MNIST and folders of images
- ``callbacks/``   Lightning callbacks used during training (figures, resume, divergence guard)
- ``evaluation/``  metrics, likelihood, probes and figures of a trained model
- ``checkpointing/`` atomic saves, safe loading, rebuilding a model, resume resolution
- ``runtime/``     speed settings, thread choice and every patch of Lightning's internals
- ``cli/``         the ``ae-*`` entry points and what they print and write
- ``api.py``       ``aelightning.load_model(path)``: a trained model for inference
- ``export.py``    ONNX / TorchScript export of a trained model, checked against PyTorch
"""

__version__ = "0.1.0"

from aelightning import config as _config  # noqa: F401  (registers the configs' resolvers)

__all__ = ["load_model"]


def __getattr__(name: str):
    """``aelightning.load_model`` imports torch only when first used (``import aelightning``
    stays cheap for the commands that do not need it)."""
    if name == "load_model":
        from aelightning.api import load_model

        return load_model
    raise AttributeError(f"module 'aelightning' has no attribute {name!r}")
