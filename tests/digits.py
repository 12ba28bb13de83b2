"""scikit-learn's bundled digits data set (1,797 8x8 images, installed with scikit-learn) and a small CNN on it.

Real data, no download: the shared ground for tests that train, quantize, prune or deploy a model.
"""

import numpy as np


def load_digits_split(seed: int = 0):
    """x as float32 in [0, 1] with shape (N, 8, 8, 1), y as int labels; a fixed 80/20 train/test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(0.8 * len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def build_digits_cnn(width: int = 16):
    import keras

    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_cnn")


def train_digits_cnn(epochs: int = 15, seed: int = 0, width: int = 16):
    """A trained CNN (about 97% test accuracy) and its data: (model, x_train, y_train, x_test, y_test)."""
    import keras

    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    model = build_digits_cnn(width)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    return model, x_train, y_train, x_test, y_test
