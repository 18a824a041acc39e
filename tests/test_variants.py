"""The variant table against keras.applications itself (the reference, not a second copy)."""

import keras
import pytest

from core.settings.variants import VARIANT_NAMES, VARIANTS, get_variant


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_variant_matches_keras_applications(name):
    variant = VARIANTS[name]
    base = getattr(keras.applications, variant.keras_constructor)(
        include_top=False, weights=None, input_shape=(32, 32, 3))
    assert base.count_params() == variant.base_params
    assert len(base.layers) == variant.base_layers
    # Keras's top conv has round_filters(1280 * width) channels: the width coefficient shows there.
    top_channels = base.get_layer("top_conv").filters
    assert top_channels == int(max(8, int(1280 * variant.width + 4) // 8 * 8))


def test_table_is_ordered_and_grows():
    params = [VARIANTS[n].base_params for n in VARIANT_NAMES]
    assert VARIANT_NAMES == ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7")
    assert params == sorted(params)
    assert [VARIANTS[n].resolution for n in VARIANT_NAMES] == [224, 240, 260, 300, 380, 456, 528, 600]


def test_get_variant_names_the_allowed_values():
    assert get_variant("B3").name == "b3"
    with pytest.raises(KeyError, match="b0, b1.*got 'b9'"):
        get_variant("b9")
