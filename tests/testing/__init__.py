"""A package so that tests/testing/test_models.py and tests/test_models.py get distinct module names."""
