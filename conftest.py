"""Doctest collection of ``src/``: modules for optional extras are skipped where the extra is absent."""

import importlib.util

collect_ignore = [
    path
    for path, needs in [("src/softseg/integrations/albumentations.py", "albumentations")]
    if importlib.util.find_spec(needs) is None
]
