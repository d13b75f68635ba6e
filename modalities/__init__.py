"""Built-in modalities. Importing this package registers each of them with ``binder.registry``."""
from modalities import (  # noqa: F401  (imported for registration)
    audio,
    depth,
    image,
    imu,
    speech_units,
    text,
    thermal,
    timeseries,
    two_stream,
    video,
)
from modalities.base import Modality, NoOptions

__all__ = ["Modality", "NoOptions"]
