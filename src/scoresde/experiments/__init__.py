"""Experiments built from the library: runs that train, sample and report in one call.

- :mod:`scoresde.experiments.funnel_demo`: samplers compared on Neal's funnel (``scoresde demo``).
"""
