"""Read TensorBoard event files back with tensorboard's own reader."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_events(logdir: Path) -> EventAccumulator:
    files = sorted(Path(logdir).rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event files under {logdir}"
    acc = EventAccumulator(
        str(files[0].parent), size_guidance={"images": 0, "scalars": 0, "tensors": 0}
    )
    acc.Reload()
    return acc


def scalar_values(acc: EventAccumulator, tag: str) -> list[float]:
    return [e.value for e in acc.Scalars(tag)]


def session_hparams(acc: EventAccumulator) -> dict[str, object]:
    """The hparams of the run's HPARAMS session summary, as TensorBoard's plugin reads them."""
    from google.protobuf.json_format import MessageToDict
    from tensorboard.plugins.hparams import metadata

    content = acc.PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG]
    info = metadata.parse_session_start_info_plugin_data(content)
    return {name: MessageToDict(value) for name, value in info.hparams.items()}
