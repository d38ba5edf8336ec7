"""Pretrained weights load by layer name: the real Keras 2.8 MobileNet v1 0.25/224 in ../shared/data."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from mnetdeploy.build import build
from mnetdeploy.config import load_config

V1_025 = {"model.arch": "v1", "model.alpha": 0.25, "model.resolution": 224}


@pytest.fixture(scope="module")
def sample(request):
    from conftest import IMAGENET_SAMPLE, require
    from mnetdeploy.data import find_images, load_images

    directory = require(IMAGENET_SAMPLE)
    paths = find_images(directory)
    with open(directory / "labels.csv") as f:
        labels = {row["file"]: int(row["index_1000"]) for row in csv.DictReader(f)}
    images = load_images(paths, 224)
    return images.array, np.array([labels[p.name] for p in images.paths])


@pytest.fixture(scope="module")
def pretrained_build(tmp_path_factory):
    from conftest import PRETRAINED_V1, require

    weights = require(PRETRAINED_V1)
    out = tmp_path_factory.mktemp("artifacts")
    result = build(load_config(None, {**V1_025, "model.weights": str(weights), "output": str(out)}))
    return weights, result


def test_legacy_keras2_file_loads_by_name_and_says_what_was_done(pretrained_build):
    _, result = pretrained_build
    info = result.summary["weights"]
    assert info["kind"] == "legacy-h5"
    assert info["layers_loaded"] == 55  # conv1 + 13 x (dw, pw) with their BNs + conv_preds
    assert "Keras 2.8.0" in info["note"] and "by name" in info["note"]


def test_predictions_equal_keras_applications_with_the_same_weights(pretrained_build, sample):
    import keras

    weights, result = pretrained_build
    images, labels = sample
    ours = keras.saving.load_model(result.artifact_dir / "model.keras")
    reference = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, weights=None)
    reference.load_weights(str(weights))  # Keras' own (topological) loader of the legacy file
    ours_out = ours.predict(images, batch_size=50, verbose=0)
    ref_out = reference.predict(images, batch_size=50, verbose=0)
    assert np.max(np.abs(ours_out - ref_out)) < 1e-5
    top1 = float(np.mean(np.argmax(ours_out, axis=1) == labels))
    assert top1 > 0.50, top1


def test_imagenet_weights_from_the_keras_cache(tmp_path, monkeypatch, pretrained_build, sample):
    import keras

    weights, from_file = pretrained_build
    cache = tmp_path / "keras-home" / "models"
    cache.mkdir(parents=True)
    os.symlink(weights, cache / "mobilenet_2_5_224_tf.h5")  # the name Keras applications caches it under
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    result = build(load_config(None, {**V1_025, "model.weights": "imagenet", "output": str(tmp_path / "a")}))
    images = sample[0][:20]
    a = keras.saving.load_model(result.artifact_dir / "model.keras").predict(images, verbose=0)
    b = keras.saving.load_model(from_file.artifact_dir / "model.keras").predict(images, verbose=0)
    np.testing.assert_array_equal(a, b)


def test_weights_for_another_width_are_refused_with_the_layer(pretrained_build, tmp_path):
    from mnetdeploy.errors import UserError

    weights, _ = pretrained_build
    with pytest.raises(UserError, match=r"layer 'conv1' has shapes \[\(3, 3, 3, 8\)\] in the file"):
        build(load_config(None, {**V1_025, "model.alpha": 0.5, "model.weights": str(weights),
                                 "output": str(tmp_path)}))
    assert list(tmp_path.iterdir()) == []


def test_weights_for_another_family_are_refused(pretrained_build, tmp_path):
    from mnetdeploy.errors import UserError

    weights, _ = pretrained_build
    with pytest.raises(UserError, match="no weights for layer 'Conv1'"):
        build(load_config(None, {"model.arch": "v2", "model.weights": str(weights), "output": str(tmp_path)}))
