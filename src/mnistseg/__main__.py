"""``python -m mnistseg`` runs the command line, as ``torchrun -m mnistseg`` will."""

from mnistseg.cli import main

raise SystemExit(main())
