"""``python -m softseg`` (what ``torchrun -m softseg train ...`` runs)."""

from .cli import main

main()
