"""neurofeat: frozen brain-MRI foundation-model embeddings in a queryable store.

Stages (one concept per subpackage):

- :mod:`neurofeat.store`    the store: layout, schemas, atomic writers, DuckDB catalog
- :mod:`neurofeat.ingest`   cohort ingest (NIfTI manifest/folder + clinical table)
- :mod:`neurofeat.synth`    the synthetic multi-site glioma cohort with known truth
- :mod:`neurofeat.tasks`    task registry (labels, types, cohort filters)
- :mod:`neurofeat.extract`  the GPU stage: preprocessing, encoders, pretraining, extraction
- :mod:`neurofeat.analysis` pure statistics on arrays/tables (no torch)
- :mod:`neurofeat.cli`      the Typer command line, a thin layer over the above
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
