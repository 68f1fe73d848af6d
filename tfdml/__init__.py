"""tfdml: deep metric learning for TensorFlow and Keras 3."""

__version__ = "0.1.0"
