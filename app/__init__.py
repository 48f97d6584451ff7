"""mlsys: a Ray-native machine-learning system (import package `app`)."""

__version__ = "0.1.0"
