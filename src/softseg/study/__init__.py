"""Experiments on top of training, one job per module.

- :mod:`.grid`: the resumable grid of cells (method x factor x seed) and its ``grid.json`` record;
- :mod:`.stats`: per (method, factor) summaries and noise verdicts against a baseline;
- :mod:`.report`: ``results.csv``, ``summary.csv`` and ``summary.md``;
- :mod:`.cell`: what a method name means, and training one cell;
- :mod:`.figures`: the labels-and-predictions figure of a grid;
- :mod:`.retention`: what labels keep without a model (class mass, score ceiling);
- :mod:`.plots`: the figures' drawing (matplotlib without pyplot);
- :mod:`.demo`: ``softseg demo``.
"""
