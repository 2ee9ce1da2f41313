"""Training on soft labels: coherent augmentation, the soft cross-entropy, metrics, models and the
training loop. Builds on :mod:`softseg.ops` and :mod:`softseg.data`; knows nothing of the study.
"""
