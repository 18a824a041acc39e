"""TrainConfig: every bad value is refused with a message naming the field, the allowed values
and the value given."""

import json

import pytest

from core.config import ConfigError, TrainConfig

# (changes, field named, text that must appear in the message)
BAD_SETTINGS = [
    ({"variant": "b9"}, "variant", "one of b0, b1, b2, b3, b4, b5, b6, b7; got 'b9'"),
    ({"variant": 0}, "variant", "text; got 0"),
    ({"weights": "imagenett"}, "weights", "none, imagenet, or the path of an existing weights file"),
    ({"weights": "/no/such/file.h5"}, "weights", "got '/no/such/file.h5'"),
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


def test_at_least_thirty_bad_settings_are_covered():
    assert len(BAD_SETTINGS) >= 30


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


def test_warnings_explain_risky_combinations():
    seed_224 = TrainConfig(head="seed", image_size=224, batch_size=32, weights="none")
    notes = " ".join(seed_224.warnings())
    assert "7×7 feature map" in notes and "Dense(1024)" in notes
    assert "stays at chance" in notes
    assert TrainConfig().warnings() == []


def test_fine_tune_phase_and_dropout_defaults():
    assert TrainConfig(variant="b4").classifier_dropout == 0.4
    assert TrainConfig(dropout=0.1).classifier_dropout == 0.1
    assert TrainConfig(freeze_base=True, fine_tune_at_epoch=2, epochs=3).has_fine_tune_phase
    assert not TrainConfig(freeze_base=True, fine_tune_at_epoch=3, epochs=3).has_fine_tune_phase
