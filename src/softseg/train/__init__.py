"""Training on soft labels: coherent augmentation, the soft cross-entropy, metrics, models and the
training loop. Builds on :mod:`softseg.ops` and :mod:`softseg.data`; knows nothing of the study.

Modules: :mod:`.transforms` (joint image/label augmentation), :mod:`.targets` and :mod:`.losses`
(the three target forms and the soft cross-entropy), :mod:`.metrics`, :mod:`.models`,
:mod:`.config` (a run's config and run-directory files), :mod:`.runtime` (device, distributed
processes), :mod:`.inputs` (splits, augmented batches, class weights), :mod:`.loop` (``train``),
:mod:`.evaluate` (scoring and loading runs) and :mod:`.predict` (masks for image files).
"""
