"""Run configs (``*.yaml``), benchmark suites (``bench/*.yaml``) and example data (``data/``).

Installed as ``nervana_lstm.configs`` so an installed toolkit finds them with
:mod:`importlib.resources`, wherever it runs from.
"""
