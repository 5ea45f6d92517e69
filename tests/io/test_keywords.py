"""The keyword table matches the stdatamodels schemas; meta <-> header conversions."""

from __future__ import annotations

import pytest
from astropy.io import fits

from jwdask.io import keywords


@pytest.mark.reference
def test_table_matches_schemas(tmp_path, monkeypatch):
    pytest.importorskip("stdatamodels")
    shipped = keywords.TABLE_PATH.read_text()
    monkeypatch.setattr(keywords, "TABLE_PATH", tmp_path / "keywords.tsv")
    keywords.regenerate()
    assert (tmp_path / "keywords.tsv").read_text() == shipped


def test_header_round_trip():
    header = fits.Header([("NGROUPS", 5), ("TFRAME", 10), ("PROGRAM", "02736"), ("ODDKEY", "x")])
    meta: dict = {}
    keywords.header_to_meta(header, "PRIMARY", meta)
    assert meta["exposure"]["ngroups"] == 5
    assert meta["exposure"]["frame_time"] == 10.0 and isinstance(meta["exposure"]["frame_time"], float)
    assert meta["extra_fits"]["PRIMARY"]["ODDKEY"] == "x"
    cards = dict(keywords.meta_to_cards(meta, "PRIMARY"))
    assert cards == {"NGROUPS": 5, "TFRAME": 10.0, "PROGRAM": "02736", "ODDKEY": "x"}
    assert keywords.get(meta, "exposure.ngroups") == 5
    assert keywords.get(meta, "exposure.nope", "d") == "d"
