"""TrainConfig: every bad value is refused with a message naming the field, the allowed values
and the value given."""

import json

import pytest

from core.data.cifar10 import training_images
from core.settings.config import ConfigError, TrainConfig, check_startable

# (changes, field named, text that must appear in the message)
BAD_SETTINGS = [
    ({"variant": "b9"}, "variant", "one of b0, b1, b2, b3, b4, b5, b6, b7; got 'b9'"),
    ({"variant": 0}, "variant", "text; got 0"),
    ({"weights": "imagenett"}, "weights", "none, imagenet, or the path of a weights file (.h5, "),
    ({"weights": ""}, "weights", "got ''"),
    ({"weights": "/etc/passwd"}, "weights", "got '/etc/passwd'"),
    ({"image_size": 16}, "image_size", "[32, 600]; got 16"),
    ({"image_size": 601}, "image_size", "got 601"),
    ({"image_size": 32.5}, "image_size", "a whole number; got 32.5"),
    ({"image_size": True}, "image_size", "a whole number; got True"),
    ({"head": "mlp"}, "head", "one of gap, seed; got 'mlp'"),
    ({"dropout": 0.95}, "dropout", "[0, 0.9]; got 0.95"),
    ({"optimizer": "rmsprop"}, "optimizer", "one of sgd, adam, adamw; got 'rmsprop'"),
    ({"learning_rate": -1.0}, "learning_rate", "(0, 10]; got -1.0"),
    ({"learning_rate": 0.0}, "learning_rate", "got 0.0"),
    ({"learning_rate": float("nan")}, "learning_rate", "a finite number"),
    ({"learning_rate": "fast"}, "learning_rate", "a finite number; got 'fast'"),
    ({"momentum": 1.5}, "momentum", "[0, 0.999]; got 1.5"),
    ({"weight_decay": -0.1}, "weight_decay", "got -0.1"),
    ({"batch_size": 0}, "batch_size", "[1, 4096]; got 0"),
    ({"batch_size": 5000}, "batch_size", "got 5000"),
    ({"batch_size": "32"}, "batch_size", "a whole number; got '32'"),
    ({"epochs": 0}, "epochs", "[1, 1000]; got 0"),
    ({"lr_schedule": "step"}, "lr_schedule", "one of constant, plateau, cosine; got 'step'"),
    ({"plateau_factor": 1.0}, "plateau_factor", "got 1.0"),
    ({"label_smoothing": 0.7}, "label_smoothing", "[0, 0.5]; got 0.7"),
    ({"train_limit": -5}, "train_limit", "got -5"),
    ({"train_limit": 5}, "train_limit", "at least 10 (one per class); got 5"),
    ({"train_limit": 60000}, "train_limit", "got 60000"),
    ({"val_fraction": 0.9}, "val_fraction", "[0, 0.5]; got 0.9"),
    ({"seed": -1}, "seed", "got -1"),
    ({"augment_flip": "yes"}, "augment_flip", "true or false; got 'yes'"),
    ({"augment_crop_padding": 40}, "augment_crop_padding", "[0, 16]; got 40"),
    ({"mixed_precision": "fp16"}, "mixed_precision", "one of auto, on, off; got 'fp16'"),
    ({"distribution": "tpu"}, "distribution", "got 'tpu'"),
    ({"jit_compile": "xla"}, "jit_compile", "one of auto, on, off; got 'xla'"),
    ({"fine_tune_at_epoch": 2}, "fine_tune_at_epoch", "0 unless freeze_base is true"),
    ({"freeze_base": True, "fine_tune_at_epoch": 1001}, "fine_tune_at_epoch", "[0, 1000]; got 1001"),
    ({"lr_schedule": "cosine", "warmup_epochs": 4, "epochs": 4}, "warmup_epochs", "fewer than epochs (4)"),
    ({"early_stopping_patience": 2, "val_fraction": 0.0}, "early_stopping_patience", "when val_fraction is 0"),
    ({"lr_schedule": "plateau", "val_fraction": 0.0}, "lr_schedule", "plateau watches val_accuracy"),
    ({"variant": "b7", "image_size": 600, "batch_size": 4096}, "batch_size", "at most 186 at 600 px"),
]


@pytest.mark.parametrize("changes, field, text", BAD_SETTINGS, ids=[f"{f}={c}" for c, f, _ in BAD_SETTINGS])
def test_bad_setting_names_field_allowed_and_given(changes, field, text):
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict(changes)
    assert caught.value.field == field
    message = str(caught.value)
    assert message.startswith(f"{field}: expected "), message
    assert text in message, message


def test_at_least_thirty_bad_settings_are_each_refused_for_their_field():
    """Every row of the table is refused, naming its field, from a dict, from a JSON file and as a
    change of a valid config; and without that field's change the rest of the row is accepted, so
    each row is bad for the reason it names. At least thirty such rows."""
    refused = []
    for changes, field, _ in BAD_SETTINGS:
        for make in (lambda: TrainConfig.from_dict(changes),
                     lambda: TrainConfig.from_json(json.dumps(changes)),
                     lambda: TrainConfig().replace(**changes)):
            with pytest.raises(ConfigError) as caught:
                make()
            assert caught.value.field == field, (changes, str(caught.value))
        TrainConfig.from_dict({k: v for k, v in changes.items() if k != field})
        refused.append(field)
    assert len(refused) >= 30
    assert len(set(refused)) >= 25       # spread over the settings, not thirty ways to break one


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({"variant": "b0", "lerning_rate": 0.1})
    assert caught.value.field == "lerning_rate"
    assert "unknown setting" in str(caught.value) and "learning_rate" in str(caught.value)


def test_json_round_trip_is_exact():
    config = TrainConfig(variant="b2", weights="none", head="seed", optimizer="sgd", learning_rate=0.001,
                         batch_size=100, epochs=4, lr_schedule="plateau", augment_flip=False)
    again = TrainConfig.from_json(config.to_json())
    assert again == config
    assert json.loads(config.to_json())["variant"] == "b2"


def test_integers_are_accepted_for_float_fields_but_not_the_reverse():
    assert TrainConfig.from_dict({"learning_rate": 1}).learning_rate == 1.0
    with pytest.raises(ConfigError, match="epochs: expected a whole number; got 2.0"):
        TrainConfig.from_dict({"epochs": 2.0})


def test_invalid_json_and_non_object():
    with pytest.raises(ConfigError, match="config: expected valid JSON"):
        TrainConfig.from_json("{variant: b0")
    with pytest.raises(ConfigError, match="config: expected a JSON object"):
        TrainConfig.from_json("[1, 2]")


def test_replace_validates():
    config = TrainConfig()
    assert config.replace(epochs=7).epochs == 7
    with pytest.raises(ConfigError, match="epochs"):
        config.replace(epochs=-1)


def test_weights_path_to_existing_file_is_accepted(tmp_path):
    path = tmp_path / "w.h5"
    path.write_bytes(b"x")
    assert TrainConfig(weights=str(path)).weights == str(path)
    check_startable(TrainConfig(weights=str(path)))


def test_a_run_whose_weights_file_is_gone_is_still_readable(tmp_path):
    """Issue 13 #3: config.json is read wherever the run folder goes; only starting needs the file."""
    path = tmp_path / "efficientnetb0_notop.h5"
    path.write_bytes(b"x")
    saved = TrainConfig(weights=str(path)).to_json()
    path.unlink()                                   # moved, or the run was copied to another machine
    config = TrainConfig.from_json(saved)
    assert config.weights == str(path)
    with pytest.raises(ConfigError) as caught:
        check_startable(config)
    assert caught.value.field == "weights"
    assert str(caught.value) == ("weights: expected none, imagenet, or the path of an existing weights file; "
                                 f"got {str(path)!r}")
    for name in ("none", "imagenet"):
        check_startable(TrainConfig(weights=name))     # nothing to look for


def test_a_float_setting_given_as_a_huge_integer_names_the_field():
    """Issue 13 #8: a 309-digit integer cannot become a float (OverflowError before the fix)."""
    huge = "9" * 309
    for text in (f'{{"learning_rate": {huge}}}', f'{{"dropout": -{huge}}}'):
        with pytest.raises(ConfigError) as caught:
            TrainConfig.from_json(text)
        field = json.loads(text.replace(huge, "1")).popitem()[0]
        assert caught.value.field == field
        assert str(caught.value).startswith(f"{field}: expected a number in ")
        assert "(309 characters)" in str(caught.value) or "(310 characters)" in str(caught.value)
        assert len(str(caught.value)) < 400          # one readable line, not the whole number
    with pytest.raises(ConfigError, match="^epochs: expected a number in .1, 1000.; got 9999"):
        TrainConfig.from_json(f'{{"epochs": {huge}}}')     # an int setting: a range error


def test_deeply_nested_json_names_the_field():
    """Issue 13 #8: JSON nested thousands deep raised RecursionError before the fix."""
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_json(f'{{"variant": "b0", "head": {deep}}}')
    assert caught.value.field == "head"
    assert "nested over 32 levels" in str(caught.value) and len(str(caught.value)) < 400
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_json(deep)
    assert caught.value.field == "config"
    with pytest.raises(ConfigError) as caught:      # braces inside a string are not nesting
        TrainConfig.from_json('{"variant": "' + "[{" * 100 + '"}')
    assert caught.value.field == "variant" and "one of b0" in str(caught.value)


def test_an_integer_beyond_python_s_digit_limit_is_a_config_error():
    with pytest.raises(ConfigError, match="^config: expected valid JSON"):
        TrainConfig.from_json('{"epochs": 1' + "0" * 5000 + "}")
    with pytest.raises(ConfigError, match="^epochs: expected a number in .1, 1000.; got an integer of more"):
        TrainConfig(epochs=10**5000)


def test_warnings_explain_risky_combinations():
    seed_224 = TrainConfig(head="seed", image_size=224, batch_size=32, weights="none")
    notes = " ".join(seed_224.warnings())
    assert "7×7 feature map" in notes and "Dense(1024)" in notes
    assert "stays at chance" in notes
    assert TrainConfig().warnings() == []


def test_fine_tune_phase_and_dropout_defaults():
    assert TrainConfig(variant="b4").classifier_dropout == 0.4
    assert TrainConfig(dropout=0.1).classifier_dropout == 0.1
    assert TrainConfig(freeze_base=True, fine_tune_at_epoch=2, epochs=3).has_fine_tune_phase_within(3)
    assert not TrainConfig(freeze_base=True, fine_tune_at_epoch=3, epochs=3).has_fine_tune_phase_within(3)
    assert TrainConfig(freeze_base=True, fine_tune_at_epoch=3, epochs=3).has_fine_tune_phase_within(4)


def test_training_images_follow_the_split_and_the_limit():
    """The engine's own count (core.data.cifar10's split), not a hard-coded 45,000."""
    import numpy as np
    assert training_images(0, 0.1) == 45_000
    assert training_images(0, 0.2) == 40_000
    assert training_images(0, 0.0) == 50_000
    assert training_images(5000, 0.1) == 5000
    labels = np.repeat(np.arange(10), 30)             # the test fixture's 30 per class
    assert training_images(0, 0.1, labels) == 270
