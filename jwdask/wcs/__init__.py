"""World coordinate systems: gwcs construction from reference files and pointing keywords."""

from jwdask.wcs.imaging import IMAGING_EXP_TYPES, imaging_wcs, s_region
from jwdask.wcs.pointing import Pointing

__all__ = ["IMAGING_EXP_TYPES", "Pointing", "imaging_wcs", "s_region"]
