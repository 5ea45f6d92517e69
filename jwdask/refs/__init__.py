"""Reference files: resolve (override → directory → offline CRDS cache), open lazily, cut.

Step code uses ``RefProvider`` (``path``, ``open``, ``open_table``, ``open_asdf``,
``record``) and ``cut_to``; tests and offline jwst runs use ``write_crds_cache`` and
``crds_environment``.
"""

from jwdask.refs.crds_cache import crds_environment, write_crds_cache
from jwdask.refs.provider import RefProvider, Resolution
from jwdask.refs.readers import cut_to

__all__ = ["RefProvider", "Resolution", "crds_environment", "cut_to", "write_crds_cache"]
