import pytest

from trainer.config import ConfigError, TrainConfig, apply_overrides, from_dict, parse_override


def test_defaults_validate():
    assert TrainConfig().validate().model == "resnet9"


@pytest.mark.parametrize("values, fragment", [
    ({"modle": "resnet9"}, "unknown config key 'modle'; did you mean 'model'"),
    ({"model": "vgg16"}, "model='vgg16' is not known; allowed: resnet9"),
    ({"optimizer": "lamb"}, "optimizer='lamb' is not known; allowed: sgd, adam, adamw, radam"),
    ({"scheduler": "poly"}, "scheduler='poly' is not known"),
    ({"epochs": 0}, "epochs=0 must be > 0"),
    ({"epochs": "ten"}, "epochs='ten' must be an integer"),
    ({"lr": "fast"}, "lr='fast' must be a number"),
    ({"lr": -1.0}, "lr=-1.0 must be a finite number >= 0"),
    ({"pretrained": "maybe"}, "pretrained='maybe' must be true or false"),
    ({"label_smoothing": 1.5}, "label_smoothing=1.5 must be below 1"),
    ({"head_epochs": 5, "epochs": 5, "model": "resnet50"}, "head_epochs=5 must be below epochs=5"),
    ({"model": "resnet9", "head": "mlp"}, "model=resnet9 has no ImageNet weights and only a linear head"),
    ({"dataset": "imagenet"}, "dataset='imagenet' is not known"),
])
def test_bad_values_are_refused_with_the_key(values, fragment):
    with pytest.raises(ConfigError) as err:
        from_dict(values)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_are_typed_data_never_code():
    items = ["lr=1e-3", "epochs=3", "model=resnet50", "pretrained=true", "optimizer=adam"]
    config = apply_overrides(TrainConfig(), items)
    assert (config.lr, config.epochs, config.pretrained, config.optimizer) == (1e-3, 3, True, "adam")
    # a YAML tag or Python expression stays a string and fails the type check
    with pytest.raises(ConfigError, match="must be a number"):
        parse_override("lr=!!python/object/apply:os.system ['echo hacked']")
    with pytest.raises(ConfigError, match="must be a number"):
        parse_override("lr=__import__('os').system('x')")
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        parse_override("lr")
    with pytest.raises(ConfigError, match="unknown config key 'lrr' in --set; did you mean 'lr'"):
        parse_override("lrr=0.1")


def test_data_dir_with_spaces_and_odd_characters_is_kept_verbatim():
    config = apply_overrides(TrainConfig(), ["data_dir=/tmp/my data/ü #1"])
    assert config.data_dir == "/tmp/my data/ü #1"
