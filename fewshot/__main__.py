"""``python -m fewshot`` runs the command-line interface."""

from .cli import main

main()
