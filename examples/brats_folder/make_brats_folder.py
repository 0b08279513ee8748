"""Lay out a BraTS-2021-style folder and a UCSF-PDGM-like clinical sheet from a synthetic cohort.

A real cohort arrives as a folder tree with one folder per patient, named by the
patient id, holding the four sequences (BraTS 2021 Training Data, re-released with the
BraTS 2023 names)::

    brats/images/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz   T1 (native)
                                     BraTS-GLI-00001-000-t1c.nii.gz   T1 post-contrast
                                     BraTS-GLI-00001-000-t2w.nii.gz   T2
                                     BraTS-GLI-00001-000-t2f.nii.gz   T2-FLAIR

and a clinical spreadsheet exported from the hospital, whose column names and values
are the site's own (here UCSF-PDGM-like: "IDH1/2 (sequencing)" = "IDH1 p.R132C",
"Survival (weeks)", "Status at last follow-up" = "DOD"/"NED", ...). neurofeat's default
mapping does not know these names, so ``mapping.toml`` (next to this script) tells
``neurofeat ingest`` what they mean.

This script only *imitates* such a cohort: it copies the NIfTI files of a synthetic
cohort (``neurofeat synth``) into that tree and rewrites its canonical clinical.csv in
the hospital's words. With a real cohort you skip it and point ``--discover`` and
``--clinical`` at your own folder and sheet.

Run (see run.sh for the whole path)::

    neurofeat synth --out cohort --n 30 --size 16 --spacing 8
    python examples/brats_folder/make_brats_folder.py --cohort cohort --out brats
    neurofeat ingest --discover brats/images --clinical brats/clinical.csv \
        --mapping examples/brats_folder/mapping.toml --store S
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

# synthetic file suffix -> BraTS 2021/2023 suffix
SEQUENCE_SUFFIX = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}


def brats_id(number: int) -> str:
    """BraTS-2021 subject ids as re-released in BraTS 2023: BraTS-GLI-00001-000."""
    return f"BraTS-GLI-{number:05d}-000"


def _idh(value: str, number: int) -> str:
    # UCSF-PDGM reports the variant found by sequencing; R132C is not in the default mapping
    if value == "true":
        return "IDH1 p.R132C" if number % 2 else "IDH1 p.R132H"
    return {"false": "wildtype", "": ""}[value]


def _mgmt(value: str) -> str:
    return {"true": "positive", "false": "negative", "": "indeterminate"}[value]


def _codel(value: str, number: int) -> str:
    # 'co-deletion' and 'intact' are known words; 'relative co-deletion' is not (mapping.toml)
    if value == "true":
        return "co-deletion"
    if value == "false":
        return "relative co-deletion" if number % 7 == 0 else "intact"
    return ""


def _status(value: str, number: int) -> str:
    # DOD = dead of disease, DOC = dead of other cause, NED/AWD = alive (mapping.toml)
    if value == "true":
        return "DOD" if number % 3 else "DOC"
    return "NED" if number % 2 else "AWD"


def make_brats_folder(cohort: Path, out: Path) -> list[str]:
    """Copy ``cohort``'s scans into ``out/images`` and write ``out/clinical.csv``.

    Returns the new patient ids (in the order of the synthetic manifest).
    """
    with open(cohort / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    with open(cohort / "clinical.csv", newline="") as handle:
        clinical = {row["patient_id"]: row for row in csv.DictReader(handle)}

    images = out / "images"
    rows, ids = [], []
    for number, scan in enumerate(manifest, start=1):
        pid = brats_id(number)
        ids.append(pid)
        folder = images / pid
        folder.mkdir(parents=True, exist_ok=True)
        for sequence, suffix in SEQUENCE_SUFFIX.items():
            shutil.copyfile(cohort / scan[sequence], folder / f"{pid}-{suffix}.nii.gz")

        c = clinical[scan["patient_id"]]
        weeks = f"{float(c['os_days']) / 7:.3f}" if c["os_days"] else ""
        rows.append({
            # every column name below is unknown to neurofeat's default mapping
            "Subject ID (BraTS)": pid,
            "Acquisition site": c["site"],
            "Age at imaging": c["age"],
            "Sex": {"F": "Female", "M": "Male", "": ""}[c["sex"]],
            "WHO CNS grade (2021)": c["grade"],
            "Final pathologic diagnosis (WHO 2021)": c["histology"],
            "IDH1/2 (sequencing)": _idh(c["idh1"], number),
            "MGMT promoter (pyrosequencing)": _mgmt(c["mgmt"]),
            "1p/19q (FISH)": _codel(c["codel_1p19q"], number),
            "Survival (weeks)": weeks,
            "Status at last follow-up": _status(c["os_event"], number) if c["os_event"] else "",
            "EOR": "GTR" if number % 2 else "STR",   # extent of resection: not a neurofeat column
            "Original synthetic id": scan["patient_id"],  # kept so a test can check the mapping
        })

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "clinical.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", type=Path, default=Path("cohort"),
                        help="a `neurofeat synth` output folder (default: cohort)")
    parser.add_argument("--out", type=Path, default=Path("brats"),
                        help="where to write images/<id>/<id>-t1n.nii.gz ... and clinical.csv "
                             "(default: brats)")
    args = parser.parse_args(argv)
    ids = make_brats_folder(args.cohort, args.out)
    print(f"wrote {len(ids)} patients to {args.out / 'images'} and {args.out / 'clinical.csv'}")


if __name__ == "__main__":
    main()
