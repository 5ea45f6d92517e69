"""Errors that jwdask reports to users: each names the file and the field at fault."""

from __future__ import annotations


class JwdaskError(Exception):
    """Base class of the errors the CLI turns into a message and exit code 2."""


class InputError(JwdaskError, ValueError):
    """A bad input file or URL: unreadable, not FITS, truncated, missing an HDU or keyword,
    or with the wrong dtype or shape.

    Parameters
    ----------
    source : str
        The file or URL at fault.
    field : str
        The HDU, keyword or array at fault (``"SCI"``, ``"PRIMARY NGROUPS"``...), or ``""``.
    reason : str
        What is wrong, in words.
    """

    def __init__(self, source: str, field: str, reason: str) -> None:
        self.source = str(source)
        self.field = field
        self.reason = reason
        where = f"{self.source}: {field}: " if field else f"{self.source}: "
        super().__init__(where + reason)

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # raised on a Dask worker, the error travels pickled with its own arguments
        return type(self), (self.source, self.field, self.reason)


class ReferenceFileError(JwdaskError, LookupError):
    """No reference file, or a reference file that does not fit the exposure.

    Parameters
    ----------
    reftype : str
        CRDS reference type (``"dark"``, ``"gain"``...).
    message : str
        What is wrong; names the file and the selectors used.
    """

    def __init__(self, reftype: str, message: str) -> None:
        self.reftype = reftype
        self.message = message
        super().__init__(f"reference file '{reftype}': {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.reftype, self.message)


class ParameterError(JwdaskError, ValueError):
    """A pipeline or step parameter that is unknown or out of range."""
