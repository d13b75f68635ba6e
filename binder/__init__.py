"""anybind: any modality into one shared CLIP embedding space.

The public API lives here so that users import from one place::

    from binder import BindingModel, BindConfig, list_modalities
"""
from binder.config import AnchorConfig, BindConfig, HeadConfig, ModalityConfig, TrunkConfig
from binder.errors import AnchorError, AnybindError, CheckpointError, ModalityError, RegistryError
from binder.registry import get_modality, list_modalities, modality_for_path, register_modality

__all__ = [
    "AnybindError", "AnchorError", "CheckpointError", "ModalityError", "RegistryError",
    "AnchorConfig", "BindConfig", "HeadConfig", "ModalityConfig", "TrunkConfig",
    "get_modality", "list_modalities", "modality_for_path", "register_modality",
    "BindingModel",
]


def __getattr__(name: str):
    # BindingModel pulls in torch and open_clip; import it only when asked for.
    if name == "BindingModel":
        from binder.model import BindingModel
        return BindingModel
    raise AttributeError(name)
