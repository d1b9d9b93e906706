"""Page sizes of list calls (FindList of every service, JobRestoreService.FindAll).

Beyond upstream: a FindList without `limit` returned every row, read into memory at once and
then streamed, so one call over a large job or result table could hold gigabytes. Now an absent
limit means DEFAULT_PAGE_SIZE, and a limit above MAX_PAGE_SIZE is refused with INVALID_ARGUMENT
naming the field rather than clamped: a client that pages until a page comes back shorter than
its limit (tests/invariants/checker.py does) would stop early, silently, on a clamped page.
A negative limit (before: no limit at all) or offset is refused too.
"""

from __future__ import annotations

from jobworkerp.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_limit(limit: int | None) -> int:
    """The number of items a list call returns at most."""
    if limit is None:
        return DEFAULT_PAGE_SIZE
    if limit < 0:
        raise InvalidArgument("limit", f"must be >= 0, got {limit}")
    if limit > MAX_PAGE_SIZE:
        raise InvalidArgument("limit", f"must be at most {MAX_PAGE_SIZE}, got {limit}; page with offset")
    return limit


def page(limit: int | None, offset: int | None) -> tuple[int, int | None]:
    """`limit` and `offset` of a FindList request, checked."""
    if offset is not None and offset < 0:
        raise InvalidArgument("offset", f"must be >= 0, got {offset}")
    return page_limit(limit), offset
