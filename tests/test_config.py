import pytest

from locseg import config as config_lib
from locseg.config import Config, ConfigError


def test_defaults_round_trip(tmp_path):
    cfg = Config()
    path = tmp_path / "c.yaml"
    config_lib.save(cfg, path)
    assert config_lib.load(path) == cfg


def test_dotted_overrides_are_typed():
    cfg = config_lib.load(overrides=["train.max_steps=30", "model.segmenter.localization.sigma1=0.1",
                                     "model.segmenter.channels=[8,16]", "train.amp=false"])
    assert cfg.train.max_steps == 30
    assert cfg.model.segmenter.localization.sigma1 == pytest.approx(0.1)
    assert cfg.model.segmenter.channels == (8, 16)
    assert cfg.train.amp is False


@pytest.mark.parametrize("override, message", [
    ("train.nope=1", "unknown config key"),
    ("train.max_steps=abc", "expected an integer"),
    ("train.max_steps", "key.sub=value"),
    ("model.segmenter.localization.box_size=4", "odd"),
    ("model.name=resnet", "segmenter or monet"),
    ("model.segmenter.localization.neck_min_pixels=0", "neck_min_pixels >= 1"),
    ("model.segmenter.localization.neck_split=-1", "neck_split must be >= 0"),
    ("model.segmenter.localization.concave_split=-0.5", "concave_split must be >= 0"),
    ("model.segmenter.localization.concave_min_pixels=0", "concave_min_pixels and concave_rounds >= 1"),
    ("model.segmenter.localization.concave_rounds=0", "concave_min_pixels and concave_rounds >= 1"),
])
def test_bad_overrides_raise_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.load(overrides=[override])


def test_unknown_yaml_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_stepz: 3\n")
    with pytest.raises(ConfigError, match="train.max_stepz"):
        config_lib.load(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        config_lib.load("/nonexistent/cfg.yaml")


def test_diff_names_changed_keys():
    a = Config()
    b = config_lib.apply_overrides(a, ["train.lr=0.5"])
    assert config_lib.diff(a, b) == ["train.lr: 0.001 -> 0.5"]
    assert config_lib.diff(a, a) == []
