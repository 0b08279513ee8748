"""``python -m neurofeat`` (also what ``torchrun -m neurofeat`` runs)."""

from neurofeat.cli import main

if __name__ == "__main__":
    main()
