"""Benchmarks of the data layer: ``python -m bench`` (see ``bench/__main__.py``)."""
