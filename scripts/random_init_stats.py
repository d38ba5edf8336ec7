#!/usr/bin/env python3
"""Logit statistics of untrained models: Keras' default init against mnetdeploy's data-dependent init.

Prints, per family at 1.0/224, the standard deviation of the final logits on 16 held-out synthetic images.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mnetdeploy.arch.init import data_dependent_init, synthetic_images  # noqa: E402
from mnetdeploy.arch.keras_builder import to_keras  # noqa: E402
from mnetdeploy.arch.plan import plan_network  # noqa: E402
from mnetdeploy.build import INIT_IMAGES  # noqa: E402


def main() -> None:
    held_out = synthetic_images(16, 224, seed=1234)
    print(f"{'arch':9s} {'default-init std':>17s} {'ours std':>9s} {'ours min':>9s} {'ours max':>9s} "
          f"{'per-image std':>14s} {'init s':>7s}")
    for arch in ("v1", "v2", "v3-small", "v3-large"):
        keras.utils.set_random_seed(0)
        model = to_keras(plan_network(arch, 1.0, 224, classifier_activation="none"))
        before = np.asarray(model.predict(held_out, verbose=0))
        start = time.perf_counter()
        data_dependent_init(model, synthetic_images(INIT_IMAGES, 224, seed=0))
        seconds = time.perf_counter() - start
        after = np.asarray(model.predict(held_out, verbose=0))
        print(f"{arch:9s} {before.std():17.3g} {after.std():9.3f} {after.min():9.2f} {after.max():9.2f} "
              f"{after.std(axis=1).mean():14.3f} {seconds:7.2f}")


if __name__ == "__main__":
    main()
