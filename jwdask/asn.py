"""JWST association files (``*_asn.json``): which exposures make which product.

Only the fields the stages use are read: ``asn_type``, ``asn_id``, ``asn_pool`` and the first
product's ``name`` and members (``expname`` relative to the association's folder, ``exptype``).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

import fsspec

from jwdask.errors import InputError


@dataclass(frozen=True)
class Member:
    """One member exposure: its URL (resolved next to the association) and its type."""

    url: str
    exptype: str


@dataclass(frozen=True)
class AssociationFile:
    """A parsed association: type, id, product name, members and pool."""

    url: str
    asn_type: str
    asn_id: str
    product_name: str
    members: tuple[Member, ...]
    pool_name: str | None = None
    """The association pool (``asn_pool``), None when the file has none."""

    @property
    def table_name(self) -> str:
        """The association's file name (jwst's ``meta.asn.table_name``, FITS ``ASNTABLE``)."""
        return posixpath.basename(self.url)

    def of_type(self, exptype: str) -> list[str]:
        """URLs of the members of one type (``science``, ``background``...)."""
        return [m.url for m in self.members if m.exptype == exptype]


def load_association(url: str) -> AssociationFile:
    """Read an association file (any fsspec URL).

    Raises
    ------
    InputError
        If the file cannot be read or lacks ``products[0].name`` / members, naming the field.
    """
    try:
        with fsspec.open(url, "rt") as f:
            asn = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(url, "association", f"cannot read the association ({exc})") from exc
    try:
        product = asn["products"][0]
        name = str(product["name"])
        raw = product["members"]
    except (KeyError, IndexError, TypeError) as exc:
        raise InputError(url, "products[0]", f"no product name or members ({exc!r})") from exc
    folder = posixpath.dirname(url)
    members = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "expname" not in m:
            raise InputError(url, f"products[0].members[{i}]", "a member without expname")
        path = str(m["expname"])
        resolved = path if "://" in path or path.startswith("/") else posixpath.join(folder, path)
        members.append(Member(resolved, str(m.get("exptype", "science")).lower()))
    if not members:
        raise InputError(url, "products[0].members", "the association has no members")
    pool = asn.get("asn_pool")
    return AssociationFile(url, str(asn.get("asn_type", "")).lower(), str(asn.get("asn_id", "")), name,
                           tuple(members), None if pool is None else str(pool))
