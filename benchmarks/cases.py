"""What the benchmark runs: the cases, how many samples and epochs, and the composed config."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from aelightning.config import CONFIG_DIR

#: the ways, in the order they alternate: (a) the framework as configured (its default
#: ``runtime.steps_per_call=auto``) and (a1) with one optimiser step per Lightning step (K=1),
#: (b) the seeds' loop, (c) the limit
METHODS = ("framework", "framework_k1", "seeds", "limit")
LETTER = {"framework": "a", "framework_k1": "a1", "seeds": "b", "limit": "c"}
#: the framework's ways and the ``runtime.steps_per_call`` each forces (None: as configured)
FRAMEWORK_WAYS = {"framework": None, "framework_k1": 1}


@dataclass(frozen=True)
class Case:
    """One row of the main table: a net (config group option) on a data set at a batch size,
    or an experiment's recipe (its net, objective, optimiser and precision) at its batch size."""

    name: str
    net: str
    data: str  # mnist | anime
    batch_size: int
    image_size: int = 28
    experiment: str = ""  # conf/experiment/<experiment>.yaml, composed first

    @property
    def overrides(self) -> list[str]:
        """What the case sets on top of conf/train.yaml (data aside)."""
        if self.experiment:
            return [f"experiment={self.experiment}", f"data.batch_size={self.batch_size}"]
        return [f"net={self.net}", f"data.batch_size={self.batch_size}"]


#: the conv AE on the image-folder path (the image-size scaling's net)
ANIME_CONV = Case("anime-conv64-b64", "conv", "anime", 64, image_size=64)

CASES = (
    Case("mlp-b32", "mlp", "mnist", 32),
    Case("mlp-b256", "mlp", "mnist", 256),
    Case("conv-b128", "conv", "mnist", 128),
    # the anime recipes as `make reproduce` trains them (bf16 autocast in (a) and (c))
    replace(ANIME_CONV, experiment="anime_conv_64"),
    Case("anime-vgg13-b32", "vgg13", "anime", 32, image_size=64, experiment="anime_vgg13_64"),
    Case("anime-vae64-b64", "conv", "anime", 64, image_size=64, experiment="anime_vae_64"),
)


@dataclass(frozen=True)
class Plan:
    """How much to run: sample counts per data kind, epochs (first = warm-up), repeats."""

    mlp_samples: int = 20_000
    conv_samples: int = 5_000
    anime_samples: int = 1_000
    epochs: int = 3
    repeats: int = 3
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    image_sizes: tuple[int, ...] = (28, 64, 128)
    memory_sizes: tuple[int, ...] = (1_000, 5_000, 20_000)

    def samples(self, case: Case) -> int:
        if case.data == "anime":
            # conv cost grows with the pixels: fewer images at larger sizes (at most 2x more)
            return max(256, round(self.anime_samples * min(2.0, (64 / case.image_size) ** 2)))
        return self.mlp_samples if case.net == "mlp" else self.conv_samples

    def scaled(self, factor: float) -> Plan:
        def s(n: int) -> int:
            return max(64, round(n * factor))

        return replace(
            self,
            mlp_samples=s(self.mlp_samples),
            conv_samples=s(self.conv_samples),
            anime_samples=s(self.anime_samples),
        )


FULL = Plan()
QUICK = Plan(
    mlp_samples=2_000,
    conv_samples=1_000,
    anime_samples=256,
    epochs=2,
    repeats=1,
    batch_sizes=(32, 256, 1024),
    image_sizes=(28, 64),
    memory_sizes=(500, 2_000),
)


def case_available(case: Case) -> str | None:
    """None when the configs the case needs exist, else why it is skipped."""
    conf = Path(CONFIG_DIR)
    if case.experiment and not (conf / "experiment" / f"{case.experiment}.yaml").is_file():
        return f"conf/experiment/{case.experiment}.yaml does not exist"
    if not (conf / "net" / f"{case.net}.yaml").is_file():
        return f"conf/net/{case.net}.yaml does not exist yet"
    if not (conf / "data" / f"{case.data}.yaml").is_file():
        return f"conf/data/{case.data}.yaml does not exist yet"
    return None
