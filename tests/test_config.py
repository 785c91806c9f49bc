import pytest

import rtmo
from rtmo.config import SIZE_SPECS


@pytest.mark.parametrize(
    ("alias", "name", "input_size"),
    [("t", "tiny", 416), ("s", "small", 640), ("m", "medium", 640), ("l", "large", 640)],
)
def test_config_accepts_size_aliases_and_picks_default_input(alias, name, input_size):
    config = rtmo.RTMOConfig(backbone_config=rtmo.CSPConfig(size=alias))
    assert config.backbone_config.size == name
    assert config.input_size == input_size == SIZE_SPECS[name].input_size


def test_config_rejects_unknown_size_naming_field_and_choices():
    with pytest.raises(rtmo.ConfigError, match=r"CSPConfig.size: got 'huge'; accepted: tiny, small"):
        rtmo.CSPConfig(size="huge")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"num_keypoints": 0}, "num_keypoints"), ({"num_classes": 0}, "num_classes"), ({"input_size": 600}, "input_size")],
)
def test_config_rejects_bad_fields_with_value_error(kwargs, field):
    with pytest.raises(ValueError, match=f"RTMOConfig.{field}"):
        rtmo.RTMOConfig(**kwargs)


def test_package_exports_sorted_explicit_all():
    assert rtmo.__all__ == sorted(rtmo.__all__)
    for name in rtmo.__all__:
        assert getattr(rtmo, name) is not None
