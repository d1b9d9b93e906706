"""Plain Python functions as runners: the decorator (`decorator.py`), the messages derived from
type hints (`schema.py`) and the value conversion both ends share (`convert.py`).

A leaf package (standard library only; protobuf is used by its callers): user modules, the
client and the runner hosts all import it, and none of them should pull in the server.
"""

from jobworkerp.functions.decorator import FunctionInfo, function, function_info

__all__ = ["FunctionInfo", "function", "function_info"]
