"""Offline CRDS cache: written by write_crds_cache, resolved by crds with no network."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from jwdask.errors import ReferenceFileError
from jwdask.refs import RefProvider, crds_environment, write_crds_cache
from tests.refs.conftest import exposure_meta, write_ref


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        msg = "network access attempted in an offline test"
        raise OSError(msg)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    files = [
        write_ref(src / "gain_old.fits", "gain", useafter="2022-01-01T00:00:00"),
        write_ref(src / "gain_new.fits", "gain", useafter="2025-01-01T00:00:00"),
        write_ref(src / "gain_a1.fits", "gain", header={"DETECTOR": "NRCA1"}),
        write_ref(src / "jwst_nircam_dark_0042.fits", "dark", shape=(3, 40, 56), window=(101, 201),
                  header={"EXP_TYPE": "NRC_IMAGE", "NOUTPUTS": 1}),
        write_ref(src / "flat.fits", "flat", window=None, subarray=None, shape=(8, 8), dq=False,
                  header={"P_FILTER": "F150W|F200W|", "FILTER": "N/A", "PUPIL": "CLEAR"}),
    ]
    return write_crds_cache(files, tmp_path / "cache", not_applicable={"nircam": ["ipc"]})


def test_cache_layout(cache: Path) -> None:
    assert (cache / "config/jwst/server_config").is_file()
    assert (cache / "config/jwst/ref_cache_subdir_mode").read_text() == "instrument"
    maps = {p.name for p in (cache / "mappings/jwst").iterdir()}
    assert {"jwst_9001.pmap", "jwst_nircam_9001.imap", "jwst_nircam_gain_9001.rmap",
            "jwst_nircam_dark_9001.rmap", "jwst_nircam_flat_9001.rmap"} <= maps
    refs = {p.name for p in (cache / "references/jwst/nircam").iterdir()}
    assert "jwst_nircam_dark_0042.fits" in refs and len(refs) == 5
    rmap = (cache / "mappings/jwst/jwst_nircam_dark_9001.rmap").read_text()
    assert "'META.EXPOSURE.NOUTPUTS'" in rmap and "'sha1sum' : '" in rmap


def test_provider_resolves_from_cache_offline(cache: Path, no_network: None) -> None:
    before = dict(os.environ)
    provider = RefProvider(crds_cache=cache)
    meta = exposure_meta()
    gain = provider.path("gain", meta)
    assert gain is not None and Path(gain).parent == (cache / "references/jwst/nircam").resolve()
    new_gain = provider.record("gain", meta)
    assert new_gain.startswith("crds://jwst_nircam_gain_")
    old_gain = provider.record("gain", exposure_meta(observation__date="2023-01-01"))
    assert old_gain != new_gain
    a1 = provider.record("gain", exposure_meta(instrument__detector="NRCA1"))
    assert a1 not in (old_gain, new_gain)
    assert provider.record("dark", meta) == "crds://jwst_nircam_dark_0042.fits"
    assert provider.open("dark", meta).sci.dims == ("group", "y", "x")
    assert provider.record("flat", meta).startswith("crds://jwst_nircam_flat_")
    assert provider.path("ipc", meta) is None and provider.record("ipc", meta) == "N/A"
    with pytest.raises(ReferenceFileError, match=r"'flat'.*CRDS cache.*FILTER=F444W"):
        provider.path("flat", exposure_meta(instrument__filter="F444W"))
    with pytest.raises(ReferenceFileError, match=r"'readnoise'.*CRDS cache"):
        provider.path("readnoise", meta)
    assert {k: os.environ.get(k) for k in before} == before


def test_directory_before_cache(cache: Path, tmp_path: Path, no_network: None) -> None:
    local = tmp_path / "local"
    local.mkdir()
    mine = write_ref(local / "my_gain.fits", "gain")
    provider = RefProvider(refs_dir=local, crds_cache=cache)
    assert provider.record("gain", exposure_meta()) == str(mine.resolve())
    assert provider.record("dark", exposure_meta()) == "crds://jwst_nircam_dark_0042.fits"


def test_crds_environment_sets_and_restores(cache: Path, no_network: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import crds
    from crds.core import heavy_client

    monkeypatch.setenv("CRDS_PATH", "/nowhere")
    monkeypatch.delenv("CRDS_CONTEXT", raising=False)
    with crds_environment(cache, "jwst_9001.pmap") as root:
        assert os.environ["CRDS_PATH"] == str(root) == str(cache.resolve())
        assert "serverless" in os.environ["CRDS_SERVER_URL"]
        assert os.environ["CRDS_MODE"] == "local" and os.environ["CRDS_READONLY_CACHE"] == "1"
        assert heavy_client.get_processing_mode("jwst") == ("local", "jwst_9001.pmap")
        params = {"META.INSTRUMENT.NAME": "NIRCAM", "META.INSTRUMENT.DETECTOR": "NRCB1",
                  "META.SUBARRAY.NAME": "SUB160", "META.OBSERVATION.DATE": "2026-01-01",
                  "META.OBSERVATION.TIME": "00:00:00"}
        found = crds.getreferences(params, reftypes=["gain"], observatory="jwst")
        assert Path(found["gain"]).is_file()
    assert os.environ["CRDS_PATH"] == "/nowhere"
    assert "CRDS_CONTEXT" not in os.environ


def test_bad_context_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jwst_NNNN.pmap"):
        write_crds_cache([], tmp_path, context="my.pmap")


def test_file_selected_but_missing_from_cache(cache: Path, no_network: None) -> None:
    (cache / "references/jwst/nircam/jwst_nircam_dark_0042.fits").unlink()
    with pytest.raises(ReferenceFileError, match=r"'dark'.*select jwst_nircam_dark_0042.fits.*not in the offline cache"):
        RefProvider(crds_cache=cache).path("dark", exposure_meta())
