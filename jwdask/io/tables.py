"""Small FITS binary tables (GROUP, INT_TIMES, ...) as Dataset variables and back.

Table ``name`` becomes variables ``"<name>.<column>"`` on dimension ``"<name>_row"``;
``ds.attrs["tables"][name]`` keeps the column order. Byte-string columns become
variable-length unicode, so the variables survive a zarr round trip.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from astropy.table import Table


def table_variables(name: str, table: Table) -> dict[str, xr.DataArray]:
    """Variables for one table, keyed by ``"<name>.<column>"``."""
    out = {}
    for column in table.colnames:
        values = np.asarray(table[column])
        if values.dtype.kind in "SU":
            values = values.astype(str).astype(object)
        elif values.dtype.byteorder not in ("=", "|"):
            values = values.astype(values.dtype.newbyteorder("="))
        out[f"{name}.{column}"] = xr.DataArray(values, dims=(f"{name}_row",))
    return out


def table_names(ds: xr.Dataset) -> list[str]:
    """Names of the tables a Dataset carries."""
    return list(ds.attrs.get("tables", {}))


def dataset_table(ds: xr.Dataset, name: str) -> Table:
    """The table ``name`` of a Dataset, as an astropy Table in its original column order."""
    columns = ds.attrs["tables"][name]
    values = [np.asarray(ds[f"{name}.{c}"].values) for c in columns]
    return Table([v.astype(str) if v.dtype == object else v for v in values], names=columns)


def with_tables(ds: xr.Dataset, tables: dict[str, Table]) -> xr.Dataset:
    """``ds`` with the given tables added (lower-case names) and recorded in attrs."""
    variables: dict[str, xr.DataArray] = {}
    order = dict(ds.attrs.get("tables", {}))
    for name, table in tables.items():
        key = name.lower()
        variables.update(table_variables(key, table))
        order[key] = list(table.colnames)
    out = ds.assign(variables)
    out.attrs = {**ds.attrs, "tables": order}
    return out
