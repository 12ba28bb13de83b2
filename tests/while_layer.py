"""A Keras layer that runs tf.while_loop over its input with the input passed through unchanged: the shape that
makes TensorFlow's calibrator segfault (tensorflow/tensorflow#75140). Importable by the converter's child process,
which reloads the saved model."""

import keras


@keras.saving.register_keras_serializable(package="edgekit_tests")
class WhileLoop(keras.layers.Layer):
    def call(self, x):
        import tensorflow as tf

        def body(i, h):
            return i + 1, tf.tanh(h * 0.5 + x)

        return tf.while_loop(lambda i, h: i < 4, body, [tf.constant(0), x])[1]
