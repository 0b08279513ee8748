"""IBSI radiomic features of a patient, as the feature vector of the ``radiomics`` backbone.

The features are computed by pyradiomics (the maintained ``pyradiomics-bhklab`` fork of
PyRadiomics, the IBSI-benchmarked reference implementation; import name ``radiomics``):
shape, first-order and the texture classes GLCM, GLRLM, GLSZM, GLDM and NGTDM, on the
original image, with the settings of a parameters file (default
``neurofeat/data/radiomics.yaml``).

The region (the *mask rule*):

- **tumour** when the patient has a registered segmentation (sequence ``seg``): every
  voxel with a non-zero label (BraTS 1/2/4, or 1/2/3 in BraTS 2023: the whole tumour);
- **brain** otherwise: every voxel above 0 in any of the sequences used (scans are
  skull-stripped with a zero background, as the encoders' preprocessing assumes).

Each sequence in ``neurofeat.sequences`` of the parameters file is described in turn
(features ``<sequence>_original_<class>_<feature>``); shape features depend on the mask
only and are stored once (``original_shape_<feature>``). Images are read with SimpleITK
exactly as ``RadiomicsFeatureExtractor.execute`` reads a file path, so a patient's
features equal the library's own output for its files and mask.

Nothing here imports torch. pyradiomics is imported lazily, with a message that says how
to install it.

Example
-------
>>> params = load_radiomics_params()                                 # doctest: +SKIP
>>> region = inspect_patient("P1", {"t1": ("t1.nii.gz", sha), ...}, params)  # doctest: +SKIP
>>> names = feature_names(params)                                     # doctest: +SKIP
>>> vector = patient_features("P1", scans, params, names)             # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from neurofeat.suggest import did_you_mean

__all__ = [
    "DEFAULT_PARAMS",
    "MASK_RULE",
    "RADIOMICS_SEQUENCES",
    "PatientRegion",
    "RadiomicsBackbone",
    "RadiomicsCohortError",
    "RadiomicsError",
    "RadiomicsInputError",
    "RadiomicsParams",
    "RadiomicsParamsError",
    "RadiomicsUnavailableError",
    "compute_features",
    "feature_names",
    "inspect_patient",
    "library_sha256",
    "library_version",
    "load_radiomics_params",
    "patient_features",
    "radiomics_backbone",
]

#: Sequences the radiomics backbone can describe.
RADIOMICS_SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
#: The default parameters file (a package resource).
DEFAULT_PARAMS = "radiomics.yaml"
#: How the region is chosen; part of the hashed parameters.
MASK_RULE = ("tumour = registered segmentation 'seg', every non-zero label (whole tumour); "
             "brain = voxels > 0 in any sequence used, when no segmentation is registered")
#: Bumped when this module computes features differently for the same parameters.
IMPLEMENTATION_VERSION = 1

_SECTIONS = ("neurofeat", "setting", "imageType", "featureClass")
_NEUROFEAT_KEYS = ("sequences",)
_GRID_ATOL = 1e-4  # mm (spacing, origin) and direction cosines


class RadiomicsError(ValueError):
    """Radiomics cannot be computed (the message names what and the fix)."""


class RadiomicsParamsError(RadiomicsError):
    """A radiomics parameters file that cannot be used (names file and key)."""


class RadiomicsUnavailableError(RadiomicsError):
    """pyradiomics is not installed."""


class RadiomicsInputError(RadiomicsError):
    """A patient's scans or segmentation cannot give a region (names patient and file).

    Attributes
    ----------
    patient_id : str
    path : str
        The file at fault.
    """

    def __init__(self, patient_id: str, path: str | os.PathLike[str], problem: str) -> None:
        self.patient_id = patient_id
        self.path = os.fspath(path)
        super().__init__(f"patient {patient_id} ({self.path}): {problem}")


class RadiomicsCohortError(RadiomicsError):
    """Some patients cannot give a region; raised before anything is computed or stored.

    Attributes
    ----------
    problems : tuple of RadiomicsInputError
        One per patient (each names the patient and the file).
    """

    def __init__(self, problems: Sequence[RadiomicsInputError], limit: int = 10) -> None:
        self.problems = tuple(problems)
        listed = "\n  ".join(str(p) for p in self.problems[:limit])
        more = f"\n  ... and {len(self.problems) - limit} more" if len(self.problems) > limit else ""
        super().__init__(f"{len(self.problems)} patient(s) cannot be used, nothing was stored; fix them (or leave "
                         f"them out of the store) and rerun:\n  {listed}{more}")


# ------------------------------------------------------------------- the library
def _radiomics() -> Any:
    """The ``radiomics`` module, quiet, or a clear error when it is not installed."""
    try:
        import radiomics
        from radiomics import featureextractor  # noqa: F401  (the extractor module)
    except ImportError as exc:
        raise RadiomicsUnavailableError(
            f"the radiomics backbone needs pyradiomics ({exc}); install it with "
            "`pip install 'neurofeat[radiomics]'` (pyradiomics-bhklab, built from source: needs a C compiler)"
        ) from None
    # pyradiomics' logger passes every DEBUG record on (to the root logger too); only its
    # errors matter here: failures are raised and reported per patient.
    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)
    return radiomics


def library_version() -> str:
    """Installed pyradiomics version (e.g. ``'v3.1.4'``)."""
    return str(_radiomics().__version__)


def library_sha256() -> str:
    """The ``checkpoint_sha256`` of radiomics rows: the hash of the implementation.

    sha256 of ``"pyradiomics-bhklab <version>; neurofeat radiomics <IMPLEMENTATION_VERSION>"``:
    the feature definitions play the role an encoder's weights play, so another library
    version is another backbone (extracting with it needs ``--replace`` or another name).
    """
    text = f"pyradiomics-bhklab {library_version()}; neurofeat radiomics {IMPLEMENTATION_VERSION}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -------------------------------------------------------------------- parameters
@dataclass(frozen=True, eq=False)
class RadiomicsParams:
    """A validated radiomics parameters file.

    Attributes
    ----------
    sequences : tuple of str
        Sequences described, in feature order.
    pyradiomics : dict
        The pyradiomics part (``setting``, ``imageType``, ``featureClass``).
    source : str
        The file read (``'neurofeat/data/radiomics.yaml'`` for the default).
    file_sha256 : str
        sha256 of the file's bytes (provenance; the hash that identifies the features
        is :meth:`sha256`, of the parsed content).
    """

    sequences: tuple[str, ...]
    pyradiomics: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    file_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The parameters as parsed (JSON-ready)."""
        return {"neurofeat": {"sequences": list(self.sequences)}, **self.pyradiomics}

    def to_json(self) -> str:
        """Canonical JSON of what determines the features: parameters, mask rule, implementation."""
        return json.dumps({"params": self.to_dict(), "mask_rule": MASK_RULE,
                           "implementation": IMPLEMENTATION_VERSION}, sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        """The ``preprocess_sha256`` of radiomics rows (hash of :meth:`to_json`)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def _read_mapping(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise RadiomicsParamsError(f"radiomics parameters {path}: not valid JSON ({exc})") from None
    try:
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError
    except ImportError:  # ruamel.yaml comes with pyradiomics (through pykwalify)
        _radiomics()
        raise
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise RadiomicsParamsError(f"radiomics parameters {path}: not valid YAML ({exc})") from None


def load_radiomics_params(path: str | os.PathLike[str] | None = None) -> RadiomicsParams:
    """Read and validate a radiomics parameters file (YAML or JSON).

    Parameters
    ----------
    path : path, optional
        Default: ``neurofeat/data/radiomics.yaml``.

    Returns
    -------
    RadiomicsParams

    Raises
    ------
    RadiomicsParamsError
        The file cannot be read or parsed, has an unknown section or key (checked by
        pyradiomics' own schema for its sections; the message names the file, the key,
        where it is, and the closest known key), or a value the library refuses.
    RadiomicsUnavailableError
        pyradiomics is not installed.
    """
    if path is None:
        data = resources.files("neurofeat").joinpath("data", DEFAULT_PARAMS).read_bytes()
        where = Path(f"neurofeat/data/{DEFAULT_PARAMS}")
    else:
        where = Path(path)
        try:
            data = where.read_bytes()
        except OSError as exc:
            raise RadiomicsParamsError(f"radiomics parameters {where}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RadiomicsParamsError(f"radiomics parameters {where}: not a UTF-8 text file") from None
    raw = _read_mapping(where, text)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RadiomicsParamsError(f"radiomics parameters {where}: expected a mapping of sections "
                                   f"({', '.join(_SECTIONS)}), got {type(raw).__name__}")
    for key in raw:
        if key not in _SECTIONS:
            hint = (" Voxel-based (feature map) extraction is not supported." if key == "voxelSetting" else
                    did_you_mean(str(key), _SECTIONS))
            raise RadiomicsParamsError(
                f"radiomics parameters {where}: unknown section {key!r}.{hint} Sections: {', '.join(_SECTIONS)}")
    own = raw.get("neurofeat") or {}
    if not isinstance(own, dict):
        raise RadiomicsParamsError(f"radiomics parameters {where}: 'neurofeat' must be a mapping (sequences: [...])")
    for key in own:
        if key not in _NEUROFEAT_KEYS:
            raise RadiomicsParamsError(
                f"radiomics parameters {where}: unknown key {key!r} in 'neurofeat'."
                f"{did_you_mean(str(key), _NEUROFEAT_KEYS)} Known: {', '.join(_NEUROFEAT_KEYS)}")
    sequences = own.get("sequences", list(RADIOMICS_SEQUENCES))
    if isinstance(sequences, str):
        sequences = [sequences]
    sequences = tuple(str(s).strip().lower() for s in sequences or ())
    bad = [s for s in sequences if s not in RADIOMICS_SEQUENCES]
    if not sequences or bad or len(set(sequences)) != len(sequences):
        raise RadiomicsParamsError(
            f"radiomics parameters {where}: neurofeat.sequences must be distinct names among "
            f"{', '.join(RADIOMICS_SEQUENCES)}; got {list(own.get('sequences', []))}")
    library = {key: value for key, value in raw.items() if key != "neurofeat"}
    _validate_with_library(library, where)
    return RadiomicsParams(sequences=sequences, pyradiomics=library, source=str(where),
                           file_sha256=hashlib.sha256(data).hexdigest())


def _validate_with_library(library: dict[str, Any], where: Path) -> None:
    """pyradiomics' schema check (pykwalify), its errors turned into one named message."""
    import re

    _radiomics()
    from pykwalify.errors import PyKwalifyException
    from radiomics import featureextractor

    try:
        featureextractor.RadiomicsFeatureExtractor(json.loads(json.dumps(library)))
    except PyKwalifyException as exc:
        text = str(getattr(exc, "msg", "") or exc)
        unknown = re.search(r"Key '([^']+)' was not defined\. Path: '([^']*)'", text)
        if unknown:
            key, section = unknown.group(1), unknown.group(2).strip("/") or "top level"
            known = _schema_keys(section)
            hint = did_you_mean(key, known) if known else ""
            raise RadiomicsParamsError(
                f"radiomics parameters {where}: unknown key {key!r} in {section!r}.{hint} "
                "See pyradiomics' parameter documentation (Customizing the extraction) for the keys.") from None
        errors = "; ".join(line.strip(" -.:") for line in text.splitlines()
                           if line.strip(" -.:") and "---" not in line and "Schema validation failed" not in line)
        raise RadiomicsParamsError(f"radiomics parameters {where}: {errors}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise RadiomicsParamsError(f"radiomics parameters {where}: {exc}") from None


def _schema_keys(section: str) -> list[str]:
    """Keys pyradiomics' schema allows in *section* (for "did you mean")."""
    try:
        from radiomics import getParameterValidationFiles
        from ruamel.yaml import YAML

        schema_file, _ = getParameterValidationFiles()
        schema = YAML(typ="safe", pure=True).load(Path(schema_file).read_text())
        node = schema["mapping"]
        for part in section.split("/"):
            node = node[part]
        return sorted(node.get("mapping", {}))
    except Exception:  # noqa: BLE001 - only a hint
        return []


# ------------------------------------------------------------------------ images
@dataclass(frozen=True)
class PatientRegion:
    """The region a patient's features are computed in.

    Attributes
    ----------
    patient_id : str
    mask : {'tumour', 'brain'}
    mask_file : str
        The segmentation file (tumour), or the sequence files joined with ``;`` (brain).
    mask_voxels : int
    mask_ml : float
        Volume in millilitres (voxels x voxel volume).
    """

    patient_id: str
    mask: str
    mask_file: str
    mask_voxels: int
    mask_ml: float


def _read(patient_id: str, path: str, *, header_only: bool = False) -> Any:
    import SimpleITK as sitk

    try:
        if header_only:
            reader = sitk.ImageFileReader()
            reader.SetFileName(path)
            reader.ReadImageInformation()
            return reader
        return sitk.ReadImage(path)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RadiomicsInputError(patient_id, path, f"cannot be read as an image ({first}); replace it with an "
                                                    "intact NIfTI") from None


def _grid(image: Any) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]:
    return (tuple(int(s) for s in image.GetSize()), np.asarray(image.GetSpacing(), float),
            np.asarray(image.GetOrigin(), float), np.asarray(image.GetDirection(), float))


def _grid_problem(ref: Any, other: Any) -> str:
    """How *other*'s voxel grid differs from *ref*'s; ``""`` when they match."""
    size_r, spacing_r, origin_r, direction_r = _grid(ref)
    size_o, spacing_o, origin_o, direction_o = _grid(other)
    if size_r != size_o:
        return f"size {size_o}, not {size_r}"
    for what, a, b in (("spacing", spacing_r, spacing_o), ("origin", origin_r, origin_o),
                       ("direction", direction_r, direction_o)):
        if not np.allclose(a, b, rtol=1e-6, atol=_GRID_ATOL):
            return f"{what} {tuple(np.round(b, 4))}, not {tuple(np.round(a, 4))}"
    return ""


def _files(patient_id: str, scans: Mapping[str, Any], sequences: Sequence[str]) -> tuple[list[str], str | None]:
    """(the sequences' paths, the segmentation's path or None); a missing sequence is an error."""
    missing = [s for s in sequences if not scans.get(s)]
    if missing:
        raise RadiomicsInputError(
            patient_id, "scans table", f"no registered scan for sequence(s) {', '.join(missing)}; ingest them, or "
                                   "list only the sequences every patient has in the parameters' neurofeat.sequences")
    seg = scans.get("seg")
    return [os.fspath(_path(scans[s])) for s in sequences], (os.fspath(_path(seg)) if seg else None)


def _path(entry: Any) -> Any:
    return entry[0] if isinstance(entry, (tuple, list)) else entry


def _verify(patient_id: str, scans: Mapping[str, Any]) -> None:
    """Every file's bytes are those registered at ingest (when a sha256 is given)."""
    from neurofeat.hashing import sha256_file

    for seq, entry in scans.items():
        if not isinstance(entry, (tuple, list)) or len(entry) < 2 or not entry[1]:
            continue
        path = os.fspath(entry[0])
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise RadiomicsInputError(patient_id, path, f"{seq} cannot be read ({exc.strerror or exc})") from None
        if actual != str(entry[1]).lower():
            raise RadiomicsInputError(
                patient_id, path, f"{seq} changed since ingest (sha256 {actual[:12]}…, registered "
                                  f"{str(entry[1])[:12]}…); restore the file or re-ingest the patient")


def _mask(patient_id: str, images: Sequence[Any], paths: Sequence[str], seg_path: str | None,
          header_of_seg: Any | None = None) -> tuple[Any, PatientRegion]:
    """The binary mask (SimpleITK uint8, label 1, on the images' grid) and its region."""
    import SimpleITK as sitk

    ref = images[0]
    if seg_path is not None:
        seg = _read(patient_id, seg_path)
        problem = _grid_problem(ref, seg)
        if problem:
            raise RadiomicsInputError(
                patient_id, seg_path, f"the segmentation is not on the grid of {paths[0]} ({problem}); resample "
                                      "the label map onto the images' grid (nearest neighbour) and re-ingest")
        labels = sitk.GetArrayViewFromImage(seg)
        inside = np.asarray(labels) != 0
        kind, where = "tumour", seg_path
    else:
        inside = np.zeros(tuple(reversed(ref.GetSize())), dtype=bool)
        for image in images:
            inside |= np.asarray(sitk.GetArrayViewFromImage(image)) > 0
        kind, where = "brain", ";".join(paths)
    n_voxels = int(inside.sum())
    if n_voxels == 0:
        problem = ("the segmentation labels no voxel (every label is 0); give this patient a non-empty "
                   "segmentation, or remove it from the store's scans to use the brain mask"
                   if kind == "tumour" else
                   "no voxel is above 0 in any sequence, so the brain mask is empty; check the scans "
                   "(skull-stripped, zero background) and re-ingest")
        raise RadiomicsInputError(patient_id, where, problem)
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(ref)
    voxel_ml = float(np.prod(ref.GetSpacing())) / 1000.0
    return mask, PatientRegion(patient_id, kind, where, n_voxels, n_voxels * voxel_ml)


def _load(patient_id: str, scans: Mapping[str, Any], params: RadiomicsParams) -> tuple[list[Any], Any, PatientRegion]:
    paths, seg_path = _files(patient_id, scans, params.sequences)
    images = [_read(patient_id, p) for p in paths]
    for path, image in zip(paths[1:], images[1:]):
        problem = _grid_problem(images[0], image)
        if problem:
            raise RadiomicsInputError(patient_id, path, f"not on the grid of {paths[0]} ({problem}); co-register "
                                                        "the sequences to one grid and re-ingest")
    mask, region = _mask(patient_id, images, paths, seg_path)
    return images, mask, region


def inspect_patient(patient_id: str, scans: Mapping[str, Any], params: RadiomicsParams) -> PatientRegion:
    """Check that a patient's files give a usable region; nothing is computed.

    Parameters
    ----------
    patient_id : str
    scans : mapping
        Sequence (``t1``... and optionally ``seg``) -> path, or ``(path, registered sha256)``
        (then the file's bytes are checked against it).
    params : RadiomicsParams

    Returns
    -------
    PatientRegion

    Raises
    ------
    RadiomicsInputError
        A sequence is missing, a file is unreadable or changed since ingest, the
        sequences or the segmentation are not on one grid, or the mask is empty (the
        message names the patient and the file).
    """
    _radiomics()
    used = {k: v for k, v in scans.items() if k in (*params.sequences, "seg")}
    _files(patient_id, used, params.sequences)
    _verify(patient_id, used)
    return _load(patient_id, used, params)[2]


# ---------------------------------------------------------------------- features
_EXTRACTORS: dict[str, tuple[Any | None, Any | None]] = {}


def _extractors(params: RadiomicsParams) -> tuple[Any | None, Any | None]:
    """(shape-only extractor or None, intensity extractor or None) for *params*, built once per
    process (building validates the settings with pykwalify, which costs more than a small ROI)."""
    key = params.sha256()
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = _build_extractors(params)
    return _EXTRACTORS[key]


def _build_extractors(params: RadiomicsParams) -> tuple[Any | None, Any | None]:
    from radiomics import featureextractor

    _radiomics()
    settings = json.loads(json.dumps(params.pyradiomics))
    classes = settings.get("featureClass") or {}
    if not classes:  # pyradiomics: no featureClass section = every class
        classes = {name: [] for name in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}
    shape = {k: v for k, v in classes.items() if k in ("shape", "shape2D")}
    other = {k: v for k, v in classes.items() if k not in shape}
    built = []
    for enabled in (shape, other):
        if not enabled:
            built.append(None)
            continue
        extractor = featureextractor.RadiomicsFeatureExtractor(dict(settings, featureClass=enabled))
        extractor.settings["additionalInfo"] = False
        built.append(extractor)
    return built[0], built[1]


def compute_features(images: Mapping[str, Any], mask: Any, params: RadiomicsParams,
                     *, extractors: tuple[Any | None, Any | None] | None = None) -> dict[str, float]:
    """Radiomic features of images (one per sequence) in one mask.

    Parameters
    ----------
    images : mapping of sequence -> SimpleITK.Image
        In :attr:`RadiomicsParams.sequences` order.
    mask : SimpleITK.Image
        Label ``1`` (the ``label`` setting) marks the region; same grid as the images.
    params : RadiomicsParams
    extractors : optional
        Reused extractors (:func:`_extractors`), to save building them per patient.

    Returns
    -------
    dict of feature name -> float
        Shape features once (``original_shape_*``), then per sequence
        ``<sequence>_<pyradiomics key>``; pyradiomics' diagnostics are left out.
    """
    shape_ex, intensity_ex = extractors if extractors is not None else _extractors(params)
    out: dict[str, float] = {}
    first = next(iter(images.values()))
    if shape_ex is not None:
        for key, value in shape_ex.execute(first, mask).items():
            if not key.startswith("diagnostics_"):
                out[key] = float(value)
    if intensity_ex is not None:
        for seq, image in images.items():
            for key, value in intensity_ex.execute(image, mask).items():
                if not key.startswith("diagnostics_"):
                    out[f"{seq}_{key}"] = float(value)
    return out


def feature_names(params: RadiomicsParams) -> tuple[str, ...]:
    """The names (in stored order) of the features *params* gives, from a small phantom.

    Raises
    ------
    RadiomicsParamsError
        The settings fail on a plain 16^3 phantom (e.g. a setting the library accepts but
        cannot apply); the message names the parameters file.
    """
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    array = rng.normal(100.0, 20.0, (16, 16, 16)).astype(np.float32)
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[4:12, 5:12, 4:11] = 1
    image = sitk.GetImageFromArray(array)
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    try:
        values = compute_features({s: image for s in params.sequences}, mask, params)
    except (ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise RadiomicsParamsError(
            f"radiomics parameters {params.source}: the settings fail on a test phantom ({exc})") from None
    if not values:
        raise RadiomicsParamsError(f"radiomics parameters {params.source}: no feature is enabled")
    return tuple(values)


def patient_features(patient_id: str, scans: Mapping[str, Any], params: RadiomicsParams,
                     names: Sequence[str], *, extractors: tuple[Any | None, Any | None] | None = None
                     ) -> tuple[np.ndarray, PatientRegion]:
    """One patient's feature vector, in the order of *names*.

    Parameters
    ----------
    patient_id : str
    scans : mapping
        As for :func:`inspect_patient` (registered hashes are not re-checked here).
    params : RadiomicsParams
    names : sequence of str
        :func:`feature_names` of *params*.

    Returns
    -------
    vector : ndarray of float64, shape (len(names),)
    region : PatientRegion

    Raises
    ------
    RadiomicsInputError
        As :func:`inspect_patient`; a feature the library could not compute, or that
        is not finite, for this patient.
    """
    used = {k: v for k, v in scans.items() if k in (*params.sequences, "seg")}
    images, mask, region = _load(patient_id, used, params)
    try:
        values = compute_features(dict(zip(params.sequences, images)), mask, params, extractors=extractors)
    except (ValueError, RuntimeError, TypeError, KeyError, IndexError) as exc:
        raise RadiomicsInputError(patient_id, region.mask_file,
                                  f"pyradiomics failed on this {region.mask} region ({exc})") from None
    if set(values) != set(names):
        raise RadiomicsInputError(patient_id, region.mask_file,
                                  f"pyradiomics returned {len(values)} features, not the {len(names)} expected")
    vector = np.array([values[n] for n in names], dtype=np.float64)
    bad = [n for n, v in zip(names, vector) if not np.isfinite(v)]
    if bad:
        raise RadiomicsInputError(patient_id, region.mask_file,
                                  f"feature(s) {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} are not finite "
                                  f"in this {region.mask} region of {region.mask_voxels} voxel(s)")
    return vector, region


# ---------------------------------------------------------------- the backbone
@dataclass(frozen=True, eq=False)
class RadiomicsBackbone:
    """Everything the rows of a radiomics extraction carry.

    Attributes
    ----------
    name : str
        Backbone name in the store (``radiomics`` unless stored under another name).
    params : RadiomicsParams
    feature_names : tuple of str
        One per embedding dimension, in order.
    checkpoint_sha256 : str
        :func:`library_sha256` (the implementation).
    preprocess_sha256 : str
        :meth:`RadiomicsParams.sha256` (parameters, sequences, mask rule).
    architecture : dict
        Stored in each Parquet file's metadata: library and version, sequences, mask
        rule, parameters and the feature names.
    """

    name: str
    params: RadiomicsParams
    feature_names: tuple[str, ...]
    checkpoint_sha256: str
    preprocess_sha256: str
    architecture: dict[str, Any]

    @property
    def embedding_dim(self) -> int:
        """Number of features."""
        return len(self.feature_names)

    @property
    def source(self) -> str:
        """``"pyradiomics-bhklab <version>"``."""
        return f"pyradiomics-bhklab {self.architecture['library_version']}"


def radiomics_backbone(name: str = "radiomics", params: str | os.PathLike[str] | RadiomicsParams | None = None
                       ) -> RadiomicsBackbone:
    """The radiomics backbone of a parameters file (default ``neurofeat/data/radiomics.yaml``).

    Raises
    ------
    RadiomicsParamsError, RadiomicsUnavailableError
        As :func:`load_radiomics_params` and :func:`feature_names`.
    """
    loaded = params if isinstance(params, RadiomicsParams) else load_radiomics_params(params)
    names = feature_names(loaded)
    architecture = {
        "kind": "radiomics", "library": "pyradiomics-bhklab", "library_version": library_version(),
        "implementation": IMPLEMENTATION_VERSION, "sequences": list(loaded.sequences), "mask_rule": MASK_RULE,
        "params": loaded.to_dict(), "features": list(names),
    }
    return RadiomicsBackbone(name=name, params=loaded, feature_names=names, checkpoint_sha256=library_sha256(),
                             preprocess_sha256=loaded.sha256(), architecture=architecture)
