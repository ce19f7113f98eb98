"""PyTorch's reference VAE example, used side by side with ``model=vae``."""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal, kl_divergence

from aelightning.builders import build_model
from aelightning.data.mnist import load_mnist_sample
from benchmarks.reference_vae import VAE, loss_function, run


def test_the_example_model_is_784_400_20():
    model = VAE()
    linear = [(m.in_features, m.out_features) for m in model.modules() if hasattr(m, "in_features")]
    assert linear == [(784, 400), (400, 20), (400, 20), (20, 400), (400, 784)]
    recon, mu, logvar = model(torch.rand(3, 1, 28, 28))
    assert recon.shape == (3, 784) and mu.shape == logvar.shape == (3, 20)


def test_framework_vae_with_hidden_400_has_the_same_architecture(make_cfg):
    ours = build_model(make_cfg("model=vae", "net.hidden_dims=[400]"), (1, 28, 28))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(VAE())
    assert ours.recon_loss == "bce" and ours.net.latent_shape == (20,)


def test_loss_is_summed_bce_plus_closed_form_kl():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    recon = torch.rand(4, 784).clamp(0.05, 0.95)
    mu, logvar = torch.randn(4, 20), torch.randn(4, 20)
    bce = -(x.view(4, -1) * recon.log() + (1 - x.view(4, -1)) * (1 - recon).log()).sum()
    kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum()
    torch.testing.assert_close(loss_function(recon, x, mu, logvar), bce + kl)


def test_one_epoch_on_real_digits_gives_a_plausible_negative_elbo():
    images, _ = load_mnist_sample()
    result = run(images[:1000], images[4000:4500], epochs=2, batch_size=128)
    first, last = (h["test_neg_elbo"] for h in result["history"])
    # an untrained Bernoulli decoder scores ~784 * ln 2 = 543 nats; learning lowers it
    assert math.isfinite(last) and last < first < 784 * math.log(2)
    assert result["test_images"] == 500


def test_reference_can_train_on_exactly_the_frameworks_split(tmp_path):
    from aelightning.data.idx import write_idx
    from aelightning.data.mnist import MNISTDataModule
    from benchmarks.reference_vae import load_images

    images, labels = load_mnist_sample()  # real digits written as IDX files
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", images[:4000, 0])
    write_idx(raw / "train-labels-idx1-ubyte", labels[:4000].to(torch.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", images[4000:, 0])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[4000:].to(torch.uint8))

    everything, test = load_images(str(tmp_path))
    assert everything.shape == (4000, 1, 28, 28) and test.shape == (1000, 1, 28, 28)
    train_split, _ = load_images(str(tmp_path), val_size=500, split_seed=7)
    framework = MNISTDataModule(data_dir=tmp_path, source="idx", val_size=500, seed=7)
    framework.setup("fit")
    assert torch.equal(train_split, framework.train_images) and len(train_split) == 3500
