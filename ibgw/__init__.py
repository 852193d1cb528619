"""ibgw: a read-only CLI and MCP server for the IBKR Client Portal Gateway.

Plugin authors need only this module::

    from ibgw import hookimpl, Read, Param, Endpoint
"""

from .declarations import Category, Endpoint, FakeRoute, Param, Read, Result
from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = [
    "Category",
    "Endpoint",
    "FakeRoute",
    "Param",
    "Read",
    "Result",
    "hookimpl",
    "__version__",
]
