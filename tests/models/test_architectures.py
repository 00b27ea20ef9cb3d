"""Tests of spectralnn.models.architectures."""

import pytest

from spectralnn.models.architectures import (
    available_architectures,
    build_model,
    resolve_architecture,
    training_schedule,
)

keras = pytest.importorskip("keras")


@pytest.mark.parametrize("name", ["resnet1d", "wren2021"])
def test_output_is_mean_and_log_variance(name):
    small = {"resnet1d": {"filters": 4, "stages": 2},
             "wren2021": {"conv_filters": [4, 4, 4], "lstm_units": [4, 4],
                          "dense_units": [4, 4]}}[name]
    model = build_model(name, 128, n_targets=2, options=small, seed=0)
    assert model.input_shape == (None, 128, 2)
    assert model.output_shape == (None, 4)


def test_wren2021_layer_sequence():
    # Wren (2021): 3 Conv1D, batch norm on the middle one, 2 LSTM, 2 Dense (+ head)
    model = build_model("wren2021", 256)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv1D") == 3
    assert kinds.count("LSTM") == 2
    assert kinds.count("Dense") == 2
    assert kinds.count("BatchNormalization") == 1
    conv = [i for i, k in enumerate(kinds) if k == "Conv1D"]
    assert conv[1] < kinds.index("BatchNormalization") < conv[2]
    assert training_schedule("wren2021") == {
        "optimizer": "nadam", "learning_rate": 1e-3, "final_learning_rate": 1e-5}


def test_epoch_pooling_accepts_any_number_of_epochs():
    import numpy as np

    model = build_model("epoch_pooling", 64, options={"filters": 4, "stages": 1,
                                                      "attention_units": 4})
    for n_epochs in (1, 4):
        out = model([np.zeros((2, n_epochs, 64, 2), "float32"),
                     np.ones((2, n_epochs), "float32")])
        assert out.shape == (2, 2)


def test_names_and_options_checked():
    assert resolve_architecture("default")[0] == "resnet1d"
    assert "epoch_pooling" in available_architectures()
    with pytest.raises(ValueError, match="unknown architecture 'transformer'"):
        build_model("transformer", 64)
    with pytest.raises(ValueError, match="unknown option 'depth'"):
        resolve_architecture("wren2021", {"depth": 3})
    with pytest.raises(ValueError, match="exactly three Conv1D"):
        build_model("wren2021", 64, options={"conv_filters": [4, 4]})
    with pytest.raises(ValueError, match="at least 8 pixels"):
        build_model("resnet1d", 4)
