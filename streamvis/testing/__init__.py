"""Test support, as `numpy.testing`: tiny random-weight models built from their real transformers configs
(`models`, `vlm`) and stand-ins for testing schedulers (`fakes`; never evidence that a model works)."""
