"""The tiny preset's data fixture (`tiny_data`) lives in tests/conftest.py, shared with tests/align."""
