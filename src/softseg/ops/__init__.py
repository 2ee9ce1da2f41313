"""The core: soft label resampling and its baselines. Imports nothing from the rest of softseg.

- :mod:`.kernels`: the 1-D filters of torch and PIL as banded weights for an axis or a crop box.
- :mod:`.resample`: soft labels and their paired image resampling (the idea of softseg).
- :mod:`.baselines`: nearest and majority label down-sampling, for comparison.
- :mod:`.sparse`, :mod:`.retention`: top-k soft labels; how much of each class survives.
"""
