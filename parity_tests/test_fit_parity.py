"""``torch_cnn.fit`` against Keras's own ``model.fit``: one epoch of 50 steps, float64, the same
batches: torch_cnn's own training step (loss from logits, ``KerasAdam``) over a trajectory.

Both start from the same seeded weights. torch's ``fit`` draws its epoch permutation from
``torch.Generator().manual_seed(seed)``; Keras is given the training images already in that
order with ``shuffle=False``, so both frameworks see identical batches, including a last
partial batch (``N_TRAIN`` is not a multiple of 32) that Keras keeps and weights by its size
in the reported loss (``_loss_tracker.update_state(loss, sample_weight=batch size)`` in
``keras/src/backend/tensorflow/trainer.py``).

Checked: the epoch's reported loss (≤ 1e-9), the epoch's accuracy (equal: every prediction
the same), validation loss and accuracy, and the final weights (≤ 1e-10).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from parity_tests.helpers import MODEL_NAMES, build_seeded_pair
from torch_cnn.data import load_cifar10
from torch_cnn.porting import torch_to_keras
from torch_cnn.train import fit

N_TRAIN = 32 * 49 + 13  # 49 full batches and a partial one of 13 images: 50 steps
N_VAL = 200
SHUFFLE_SEED = 7
WEIGHT_SEED = 11
EPOCH_LOSS_ATOL = 1e-9
WEIGHTS_ATOL = 1e-10


def _nhwc(images: torch.Tensor) -> np.ndarray:
    """uint8 NCHW → float64 NHWC, divided by 255 as the seeds do."""
    return images.permute(0, 2, 3, 1).numpy().astype("float64") / 255.0


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fit_first_epoch_matches_keras_fit(keras: ModuleType, cifar10_dir: Path, name: str) -> None:
    import keras_ref
    from keras_ref import recipe
    from keras_ref.side_by_side import keras_weights, max_abs

    ds = load_cifar10(cifar10_dir)
    train_x, train_y = ds.train.images[:N_TRAIN], ds.train.labels[:N_TRAIN]
    val_x, val_y = ds.test.images[:N_VAL], ds.test.labels[:N_VAL]

    keras_model, model = build_seeded_pair(keras, name, "float64", seed=WEIGHT_SEED)
    initial = keras_weights(keras_model)
    history = fit(
        model,
        (train_x, train_y),
        (val_x, val_y),
        epochs=1,
        batch_size=32,
        seed=SHUFFLE_SEED,
        device="cpu",
        progress=False,
    )

    # The order torch's fit drew (data.iterate_batches: randperm on a seeded CPU generator).
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(SHUFFLE_SEED))
    x = _nhwc(train_x[order])
    y = recipe.targets(name, train_y[order].numpy(), "float64")
    with keras_ref.dtype_scope("float64"):
        keras_model.compile(
            optimizer=keras.optimizers.Adam(),
            loss=recipe.loss(name),
            metrics=["accuracy"],
            jit_compile=False,
        )
        fitted = keras_model.fit(
            x,
            y,
            batch_size=32,
            epochs=1,
            shuffle=False,
            validation_data=(_nhwc(val_x), recipe.targets(name, val_y.numpy(), "float64")),
            verbose=0,
        )
    keras_history = {k: float(v[0]) for k, v in fitted.history.items()}
    final = [a for layer in torch_to_keras(model) for a in layer]
    keras_final = keras_weights(keras_model)

    assert sorted(keras_history) == sorted(history)
    loss_delta = abs(history["loss"][0] - keras_history["loss"])
    val_delta = abs(history["val_loss"][0] - keras_history["val_loss"])
    weights_delta = max_abs(final, keras_final)
    print(
        f"{name} float64 fit epoch 1: loss {history['loss'][0]:.12f} (|Δ| {loss_delta:.3g}), "
        f"val_loss |Δ| {val_delta:.3g}, final weights max |Δ| {weights_delta:.3g}"
    )
    assert max_abs(initial, keras_final) > 1e-2, "an epoch of Adam should move the weights"
    assert loss_delta <= EPOCH_LOSS_ATOL
    assert val_delta <= EPOCH_LOSS_ATOL
    # Accuracies are counts / N: any differing prediction would show as at least 1/N.
    for key in ("accuracy", "val_accuracy"):
        assert abs(history[key][0] - keras_history[key]) < 1e-12, key
    assert weights_delta <= WEIGHTS_ATOL
