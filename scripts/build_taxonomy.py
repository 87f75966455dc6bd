"""Build the compact taxonomy files shipped in ``features/data/taxonomy`` from ``../shared/data``.

Run ``python scripts/build_taxonomy.py [SHARED_DATA_DIR]``. The output is deterministic (sorted keys) so that
a rebuild from the same sources gives the same bytes; its version string names every source.

``labels.json.gz`` holds ESCO's English alternative (and hidden) labels, aligned with the rows of
``occupations.json.gz`` and ``skills.json.gz``; the occupation coder (``features/coding``) matches text against
them. Skill alternatives longer than ``MAX_SKILL_ALT_WORDS`` words are left out: they are almost never written
verbatim, and leaving them out keeps the file small.
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "features" / "data" / "taxonomy"
SKILL_PREFIX = "http://data.europa.eu/esco/skill/"
OCC_PREFIX = "http://data.europa.eu/esco/occupation/"
MAX_SKILL_ALT_WORDS = 4

# Approximate centroids (lat, lon) of municipalities around the five centres, entered by hand from public maps.
COORDS: dict[str, tuple[float, float]] = {
    "091": (60.17, 24.94),
    "049": (60.21, 24.66),
    "092": (60.29, 25.04),
    "235": (60.21, 24.73),
    "257": (60.12, 24.44),
    "753": (60.38, 25.27),
    "245": (60.40, 25.10),
    "186": (60.47, 25.09),
    "858": (60.40, 25.03),
    "543": (60.46, 24.81),
    "927": (60.42, 24.32),
    "638": (60.39, 25.66),
    "106": (60.63, 24.86),
    "444": (60.25, 24.07),
    "505": (60.64, 25.32),
    "755": (60.14, 24.23),
    "149": (60.05, 24.01),
    "710": (59.97, 23.43),
    "611": (60.48, 25.37),
    "018": (60.53, 25.60),
    "837": (61.50, 23.76),
    "536": (61.48, 23.51),
    "980": (61.55, 23.60),
    "211": (61.46, 24.07),
    "418": (61.31, 23.75),
    "604": (61.47, 23.65),
    "562": (61.68, 24.36),
    "908": (61.26, 24.03),
    "790": (61.34, 22.91),
    "922": (61.31, 23.62),
    "108": (61.64, 23.20),
    "020": (61.17, 23.87),
    "853": (60.45, 22.27),
    "202": (60.41, 22.37),
    "680": (60.49, 22.17),
    "529": (60.47, 22.03),
    "423": (60.50, 22.46),
    "481": (60.57, 22.10),
    "704": (60.55, 22.22),
    "577": (60.46, 22.69),
    "734": (60.38, 23.13),
    "895": (60.80, 21.41),
    "430": (60.85, 23.05),
    "445": (60.30, 22.30),
    "538": (60.60, 22.08),
    "503": (60.68, 21.99),
}
# Approximate region (maakunta) centroids for municipalities without their own coordinates.
REGION_COORDS: dict[str, tuple[float, float]] = {
    "01": (60.30, 24.90),
    "02": (60.55, 22.50),
    "04": (61.50, 22.00),
    "05": (60.95, 24.40),
    "06": (61.60, 23.70),
    "07": (61.00, 25.65),
    "08": (60.80, 26.70),
    "09": (61.20, 28.20),
    "10": (61.70, 27.30),
    "11": (62.60, 27.50),
    "12": (62.60, 29.80),
    "13": (62.30, 25.70),
    "14": (62.70, 22.80),
    "15": (63.10, 21.60),
    "16": (63.80, 23.20),
    "17": (65.00, 25.50),
    "18": (64.20, 27.70),
    "19": (67.00, 26.00),
    "21": (60.20, 20.00),
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _dump(name: str, obj: object, out: Path = OUT) -> None:
    data = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    with gzip.GzipFile(out / name, "wb", mtime=0) as f:
        f.write(data)


def _alt_labels(row: dict[str, str], max_words: int | None = None) -> list[str]:
    """Alternative and hidden labels of one ESCO row, without the preferred label and duplicates."""
    out: list[str] = []
    for label in (row["altLabels"] + "\n" + row["hiddenLabels"]).split("\n"):
        label = " ".join(label.split())
        if label and label != row["preferredLabel"] and label not in out:
            if max_words is None or len(label.split()) <= max_words:
                out.append(label)
    return out


def main(shared: Path, out: Path = OUT) -> None:
    """Read the sources under ``shared`` and write the compact files into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    esco = shared / "esco-v1.1.1-en"
    fi = {r["conceptUri"]: r["preferredLabel_fi"] for r in _rows(shared / "esco-v1.1.0-fi-labels" / "skills_fi.csv")}
    skills = sorted(
        (r["conceptUri"].removeprefix(SKILL_PREFIX), r["preferredLabel"], fi.get(r["conceptUri"], ""), r["skillType"])
        for r in _rows(esco / "skills_en.csv")
    )
    skill_pos = {s[0]: i for i, s in enumerate(skills)}
    skill_rows = {r["conceptUri"].removeprefix(SKILL_PREFIX): r for r in _rows(esco / "skills_en.csv")}
    occ_rows = {r["conceptUri"].removeprefix(OCC_PREFIX): r for r in _rows(esco / "occupations_en.csv")}
    occ_fi_rows = _rows(shared / "esco-v1.1.0-fi-labels" / "occupations_fi.csv")
    ofi = {r["conceptUri"]: r["preferredLabel_fi"] for r in occ_fi_rows}
    rel: dict[str, tuple[list[int], list[int]]] = {}
    for r in _rows(esco / "occupationSkillRelations.csv"):
        sid = skill_pos.get(r["skillUri"].removeprefix(SKILL_PREFIX))
        if sid is None:
            continue
        ess, opt = rel.setdefault(r["occupationUri"], ([], []))
        (ess if r["relationType"] == "essential" else opt).append(sid)
    occupations = sorted(
        [
            r["conceptUri"].removeprefix(OCC_PREFIX),
            r["iscoGroup"],
            r["preferredLabel"],
            ofi.get(r["conceptUri"], ""),
            sorted(rel.get(r["conceptUri"], ([], []))[0]),
            sorted(rel.get(r["conceptUri"], ([], []))[1]),
        ]
        for r in _rows(esco / "occupations_en.csv")
    )
    isco = {r["code"]: [r["label_fi"], r["label_en"]] for r in _rows(shared / "isco08" / "isco08_groups_fi_en.csv")}
    kod = shared / "opintopolku-koodisto"
    municipalities = {}
    for r in _rows(kod / "kunta.csv"):
        lat_lon = COORDS.get(r["code"]) or REGION_COORDS.get(r["maakunta_code"])
        municipalities[r["code"]] = [r["name_fi"], r["name_sv"], r["maakunta_code"], lat_lon, r["code"] in COORDS]
    missing = set(COORDS) - set(municipalities)
    if missing:
        raise SystemExit(f"coordinates for unknown municipality codes: {sorted(missing)}")
    languages = {r["code"].lower(): [r["name_fi"], r["name_sv"], r["name_en"]] for r in _rows(kod / "kieli.csv")}
    countries = {r["code"]: [r["name_fi"], r["name_sv"], r["name_en"]] for r in _rows(kod / "maatjavaltiot2.csv")}
    quals = {
        r["code"]: [r["name_fi"], r["name_sv"], r["name_en"], r["qualification_type"], r["eqf_level"]]
        for r in _rows(kod / "vocational_qualifications.csv")
    }
    fields = json.loads((shared / "compleap" / "finnishEducationClassification2016.json").read_text(encoding="utf-8"))
    lang_skill = {}
    for r in _rows(esco / "languageSkillsCollection_en.csv"):
        for code, name in (("fi", "Finnish"), ("sv", "Swedish"), ("en", "English")):
            if r["preferredLabel"] == name:
                lang_skill[code] = r["conceptUri"].removeprefix(SKILL_PREFIX)
    version = "esco-1.1.1+fi-1.1.0;isco-08;oph-koodisto-2026-11-22;kk2016"
    _dump("skills.json.gz", skills, out)
    _dump("occupations.json.gz", occupations, out)
    _dump(
        "labels.json.gz",
        {
            "occupations": [_alt_labels(occ_rows[o[0]]) for o in occupations],
            "skills": [_alt_labels(skill_rows[s[0]], MAX_SKILL_ALT_WORDS) for s in skills],
            "version": version,
        },
        out,
    )
    _dump(
        "codes.json.gz",
        {
            "isco": isco,
            "municipalities": municipalities,
            "languages": languages,
            "countries": countries,
            "qualifications": quals,
            "education_fields": fields,
            "language_skills": lang_skill,
            "version": version,
        },
        out,
    )


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data",
        Path(sys.argv[2]) if len(sys.argv) > 2 else OUT,
    )
