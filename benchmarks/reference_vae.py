"""PyTorch's own VAE example (github.com/pytorch/examples, ``vae/main.py``), kept faithful.

784-400-20 Gaussian encoder, 20-400-784 Bernoulli decoder, loss = BCE summed over pixels
+ analytic KL, Adam 1e-3, batch 128, the 60,000 training images shuffled each epoch; the
test loss is the negative ELBO averaged per test image (nats), as the example prints it.
The only change is the data source: the same IDX files the framework reads, as tensors,
instead of ``torchvision.datasets.MNIST`` (identical pixel values after ``ToTensor``).

    python -m benchmarks.reference_vae --data-dir data --epochs 5 --json out.json

``--val-size 5000`` trains on exactly the framework's 55,000 training images instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from aelightning.data.idx import find_idx_files, load_idx_dataset
from aelightning.data.mnist import MNISTDataModule
from aelightning.errors import DataError


class VAE(nn.Module):
    """The example's model, layer for layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: Tensor) -> Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Reconstruction + KL divergence losses summed over all elements and batch."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def train_epoch(model: VAE, loader: DataLoader, optimizer: torch.optim.Optimizer) -> float:
    model.train()
    train_loss = 0.0
    for (data,) in loader:
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / len(loader.dataset)


@torch.no_grad()
def test_epoch(model: VAE, loader: DataLoader) -> float:
    """Average negative ELBO per test image, in nats (one posterior sample per image)."""
    model.eval()
    test_loss = 0.0
    for (data,) in loader:
        recon_batch, mu, logvar = model(data)
        test_loss += loss_function(recon_batch, data, mu, logvar).item()
    return test_loss / len(loader.dataset)


def run(
    train_images: Tensor,
    test_images: Tensor,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 1,
) -> dict:
    """Train the example on uint8 ``[N, 1, 28, 28]`` images; per-epoch losses in nats."""
    torch.manual_seed(seed)
    to_float = lambda images: TensorDataset(images.float().div(255.0))  # noqa: E731 (ToTensor)
    train_loader = DataLoader(to_float(train_images), batch_size=batch_size, shuffle=True)
    test_loader = DataLoader(to_float(test_images), batch_size=batch_size, shuffle=False)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train_loss = train_epoch(model, train_loader, optimizer)
        test_loss = test_epoch(model, test_loader)
        history.append({"epoch": epoch, "train_loss": train_loss, "test_neg_elbo": test_loss})
        print(
            f"====> Epoch: {epoch} Average loss: {train_loss:.4f}  Test set loss: {test_loss:.4f}"
        )
    return {
        "epochs": epochs,
        "train_images": len(train_images),
        "test_images": len(test_images),
        "test_neg_elbo": history[-1]["test_neg_elbo"],
        "history": history,
        "seconds": time.perf_counter() - started,
    }


def load_images(data_dir: str, val_size: int = 0, split_seed: int = 42) -> tuple[Tensor, Tensor]:
    """Training and test images from the IDX files under ``data_dir``.

    ``val_size > 0`` reuses the framework's own split (``MNISTDataModule`` with the same
    ``val_size`` and seed), so both sides train on the same images.
    """
    if val_size:
        data = MNISTDataModule(data_dir=data_dir, source="idx", val_size=val_size, seed=split_seed)
        data.setup("fit")
        return data.train_images, data.test_images
    files = find_idx_files(data_dir, "MNIST")
    if files is None:
        raise DataError(f"no MNIST IDX files under '{data_dir}' (looked in MNIST/raw/)")
    train_x, _, test_x, _ = load_idx_dataset(files)
    return train_x, test_x


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding MNIST/raw/ IDX files")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--val-size",
        type=int,
        default=0,
        help="hold out the framework's validation images (data.val_size, e.g. 5000) and train "
        "on exactly the framework's training split; 0 = all 60,000 as in the example",
    )
    parser.add_argument("--split-seed", type=int, default=42, help="the framework's seed")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    train_x, test_x = load_images(args.data_dir, args.val_size, args.split_seed)
    result = run(train_x, test_x, args.epochs, args.batch_size, args.lr, args.seed)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
