"""The synthetic multi-site glioma cohort with known truth (``neurofeat synth``).

Real BraTS/UCSF/UPenn data cannot be bundled, so neurofeat ships a generator: MNI152
anatomy (from nilearn's wheel) with a glioma whose imaging traits, molecular labels,
survival and site-specific acquisition all come from a documented generative model
(:mod:`neurofeat.synth.labels`).  Importing this package does not import torch; only
rendering images (:func:`generate_cohort`) loads MONAI.

Examples
--------
>>> from neurofeat.synth import simulate_tables
>>> tables = simulate_tables(60, n_sites=3, seed=0)
>>> sorted(tables.truth["site"].unique())
['siteA', 'siteB', 'siteC']
"""

from neurofeat.synth.acquisition import SiteProtocol, acquire, protocols_frame, site_protocols
from neurofeat.synth.anatomy import (
    AnatomyWarp,
    TissueTemplate,
    grid_affine,
    grid_coordinates_mm,
    load_mni152_tissues,
    warp_tissues,
)
from neurofeat.synth.cohort import (
    CLINICAL_COLUMNS,
    MANIFEST_COLUMNS,
    RenderedPatient,
    SynthCohort,
    SynthTables,
    clinical_csv_text,
    generate_cohort,
    render_patient,
    simulate_tables,
    write_nifti_gz,
)
from neurofeat.synth.labels import (
    CAUSES,
    MARKERS,
    REGIONS,
    TRAITS,
    GenerativeModel,
    simulate_labels,
    site_names,
    site_sizes,
)
from neurofeat.synth.survival import WeibullSurvivalModel, hazard_covariates, simulate_survival
from neurofeat.synth.tumour import (
    INTENSITIES,
    SEQUENCES,
    Compartments,
    TumourSpec,
    compose_contrasts,
    tumour_compartments,
    tumour_spec,
)

__all__ = [
    "write_nifti_gz",
    "CAUSES",
    "CLINICAL_COLUMNS",
    "INTENSITIES",
    "MANIFEST_COLUMNS",
    "MARKERS",
    "REGIONS",
    "SEQUENCES",
    "TRAITS",
    "AnatomyWarp",
    "Compartments",
    "GenerativeModel",
    "RenderedPatient",
    "SiteProtocol",
    "SynthCohort",
    "SynthTables",
    "TissueTemplate",
    "TumourSpec",
    "WeibullSurvivalModel",
    "acquire",
    "clinical_csv_text",
    "compose_contrasts",
    "generate_cohort",
    "grid_affine",
    "grid_coordinates_mm",
    "hazard_covariates",
    "load_mni152_tissues",
    "protocols_frame",
    "render_patient",
    "simulate_labels",
    "simulate_survival",
    "simulate_tables",
    "site_names",
    "site_protocols",
    "site_sizes",
    "tumour_compartments",
    "tumour_spec",
    "warp_tissues",
]
