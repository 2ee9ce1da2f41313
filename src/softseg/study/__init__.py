"""Experiments on top of training: comparison grids, their statistics and reports, figures, the demo."""
