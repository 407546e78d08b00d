"""Adapters that turn other libraries' models into scoresde score models plus SDEs.

Each adapter module imports its optional dependency lazily, inside its functions, so importing
``scoresde`` never needs diffusers or the paper's code.
"""
