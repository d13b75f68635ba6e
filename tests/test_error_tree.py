"""Every error a user's settings can cause is typed: an AnybindError (one line on the CLI, a typed
JSON error in serve), still a ValueError where callers catch one."""
from __future__ import annotations

import pytest

from binder.errors import AnybindError, ConfigError
from binder.registry import get_modality, list_modalities
from modalities.audio import Audio
from modalities.augment import AudioAugment, DepthAugment
from recipes.world.config import WorldConfig
from recipes.world.speech import SpeechError


@pytest.mark.parametrize("name", list_modalities())
def test_an_unknown_option_of_any_modality_is_a_config_error_naming_it(name):
    with pytest.raises(ConfigError, match="no_such_option"):
        get_modality(name)(no_such_option=1)


@pytest.mark.parametrize("make", [lambda: Audio(normalize="loud"), lambda: AudioAugment(p_babble=2.0),
                                  lambda: DepthAugment(noise_rel=(1.0, 0.0)), lambda: WorldConfig(codebook_k=1)])
def test_bad_values_are_config_errors_and_value_errors(make):
    with pytest.raises(ConfigError) as info:
        make()
    assert isinstance(info.value, AnybindError) and isinstance(info.value, ValueError)


def test_a_missing_speech_engine_is_an_anybind_error():
    assert issubclass(SpeechError, AnybindError)
