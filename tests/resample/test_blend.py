"""Header blending (jwdask.resample.blend): the rules and HDRTAB columns of the ImageModel
schema, and their application to jwdask metadata."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask.resample.blend import BLEND_RULES, blend, blended_meta, hdrtab, hdrtab_paths

SCHEMA_RULE = {"mindate": "min", "mintime": "min", "mindatetime": "min", "maxdate": "max", "maxtime": "max",
               "maxdatetime": "max"}


def _metas() -> list[dict]:
    return [
        {"filename": "a_cal.fits", "exposure": {"start_time": 60000.5, "mid_time": 60000.6, "end_time": 60000.7,
                                                "exposure_time": 10.0, "integration_start": 2, "nints": 3},
         "instrument": {"detector": "NRCB1", "filter": "F200W", "filter_wheel_tolerance": "within commanded tolerance"},
         "observation": {"date": "2026-01-02", "date_end": "2026-01-02T00:10:00.000"},
         "visit": {"internal_target": True}, "background": {"level": 0.1}},
        {"filename": "b_cal.fits", "exposure": {"start_time": 60000.0, "mid_time": 60000.2, "end_time": 60000.3,
                                                "exposure_time": 20.0, "integration_start": 1},
         "instrument": {"detector": "NRCB2", "filter": "F200W",
                        "filter_wheel_tolerance": "outside calibration tolerance"},
         "observation": {"date": "2026-01-01", "date_end": "2026-01-03T00:00:00.000"},
         "visit": {"internal_target": False}},
    ]


def test_blended_values() -> None:
    metas = _metas()
    out = blended_meta(metas)
    assert out["filename"] == "a_cal.fits"  # ignored: the first value stays
    assert out["exposure"]["start_time"] == 60000.0 and out["exposure"]["end_time"] == 60000.7
    assert out["exposure"]["mid_time"] == pytest.approx(60000.4)
    assert out["exposure"]["exposure_time"] == 30.0 and out["exposure"]["integration_start"] == 1
    assert out["exposure"]["nints"] == 3  # no rule: the first exposure's
    assert out["instrument"]["detector"] == "MULTIPLE" and out["instrument"]["filter"] == "F200W"
    assert out["instrument"]["filter_wheel_tolerance"] == "outside calibration tolerance"
    assert out["observation"]["date"] == "2026-01-01"
    assert out["observation"]["date_end"] == "2026-01-03T00:00:00.000"
    assert isinstance(out["exposure"]["mid_time"], float) and isinstance(out["exposure"]["exposure_time"], float)
    assert metas[0]["exposure"]["start_time"] == 60000.5  # inputs untouched


def test_hdrtab_columns() -> None:
    table = hdrtab(_metas())
    assert len(table) == 2
    order = [n for n in table.colnames]
    assert order.index("FILENAME") < order.index("DETECTOR") < order.index("EXPSTART") < order.index("BKGLEVEL")
    assert "PUPIL" not in table.colnames  # set in no input
    assert list(table["FILENAME"]) == ["a_cal.fits", "b_cal.fits"]
    assert table["INTARGET"].dtype == bool
    assert table["INTSTART"].dtype.kind == "i"
    assert table["NINTS"].dtype.kind == "f" and np.isnan(table["NINTS"][1])  # missing in one row: NaN
    assert table["BKGLEVEL"][0] == 0.1 and np.isnan(table["BKGLEVEL"][1])
    meta, again = blend(_metas())
    assert again.colnames == table.colnames and meta["instrument"]["detector"] == "MULTIPLE"


def test_hdrtab_string_column_with_missing_value() -> None:
    metas = _metas()
    metas[1]["instrument"].pop("filter")
    column = hdrtab(metas)["FILTER"]
    assert list(column) == ["F200W", "nan"]  # as numpy (and jwst) turn a NaN among strings


@pytest.mark.reference
def test_rules_and_columns_are_the_schema_ones() -> None:
    schemautil = pytest.importorskip("jwst.model_blender._schemautil")
    from stdatamodels.jwst import datamodels

    from jwdask.io import keywords

    columns, rules, _ = schemautil.parse_schema(datamodels.ImageModel().schema)
    expected = {path[5:]: SCHEMA_RULE.get(rule, rule) for path, rule in rules.items() if rule != "first"}
    assert expected == BLEND_RULES
    assert tuple(path[5:] for path in columns) == hdrtab_paths()
    names = keywords.by_path()
    assert [names[tuple(p[5:].split("."))].name for p in columns] == list(columns.values())
