"""Finding a program's exposures and associations; Image2/Image3 associations from headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from jwdask.errors import InputError
from jwdask.service.associations import (
    Exposure,
    build_image3,
    discover,
    file_root,
    level3_name,
    read_exposure,
)


def test_given_associations_are_used(program_dir: Path) -> None:
    plan = discover([program_dir])
    roots = sorted(p.name.removesuffix("_uncal.fits") for p in program_dir.glob("*_uncal.fits"))
    assert sorted(plan.exposures) == roots
    assert [a.members for a in plan.image2] == [(r,) for r in roots]
    (image3,) = plan.image3
    assert image3.source and image3.source.endswith("_image3_00001_asn.json")
    assert image3.members == tuple(roots) and image3.asn_id == "o001"
    assert not plan.problems
    # an association file alone brings its members' raw exposures lying next to it
    alone = discover([image3.source])
    assert sorted(alone.exposures) == roots and [a.product for a in alone.image3] == [image3.product]


def test_associations_built_from_headers(program_dir: Path) -> None:
    for asn in program_dir.glob("*_asn.json"):
        asn.unlink()
    plan = discover(sorted(program_dir.glob("*_uncal.fits")))
    assert [a.product for a in plan.image2] == sorted(plan.exposures)
    (image3,) = plan.image3
    assert image3.source is None and image3.product == "jw09001-o001_t001_nircam_clear-f200w-sub160"
    assert image3.members == tuple(sorted(plan.exposures))


def test_grouping_and_names() -> None:
    base = {"PROGRAM": "01234", "OBSERVTN": "002", "TARGPROP": "A", "INSTRUME": "NIRCAM", "FILTER": "F150W",
            "PUPIL": "CLEAR", "SUBARRAY": "FULL"}
    exposures = [Exposure("e1", "e1", base), Exposure("e2", "e2", {**base, "FILTER": "F200W"}),
                 Exposure("e3", "e3", {**base, "TARGPROP": "B"}), Exposure("e4", "e4", base),
                 Exposure("bad", "bad", {}, "unreadable")]
    groups = {a.product: a.members for a in build_image3(exposures)}
    assert groups == {"jw01234-o002_t001_nircam_clear-f150w": ("e1", "e4"),
                      "jw01234-o002_t001_nircam_clear-f200w": ("e2",),
                      "jw01234-o002_t002_nircam_clear-f150w": ("e3",)}
    miri = {**base, "INSTRUME": "MIRI", "PUPIL": None, "FILTER": "F770W", "SUBARRAY": "SUB128"}
    assert level3_name(miri, 1) == "jw01234-o002_t001_miri_f770w-sub128"
    assert file_root("/x/jw01234002001_02101_00001_nrcb1_cal.fits") == "jw01234002001_02101_00001_nrcb1"


def test_bad_inputs(program_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        discover([tmp_path / "missing"])
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        discover([other])
    broken = tmp_path / "broken_asn.json"
    broken.write_text("{")
    with pytest.raises(InputError, match="broken_asn.json"):
        discover([broken])
    garbage = tmp_path / "jw00000000000_00000_00000_nrcb1_uncal.fits"
    garbage.write_bytes(b"not fits at all" * 300)
    exp = read_exposure(garbage)
    assert exp.error and "PRIMARY header" in exp.error
