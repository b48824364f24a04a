"""Bundled word lists for the open-vocabulary protocol of ``emocap eval --vocabulary`` (data only; see README.md)."""
