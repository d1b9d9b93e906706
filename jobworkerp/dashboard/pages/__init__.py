"""The dashboard's pages, one module per section; `register` adds every route to a Site."""

from __future__ import annotations

from jobworkerp.dashboard.site import Site


def register(site: Site) -> None:
    from jobworkerp.dashboard.pages import jobs, overview, results, runners, workers

    for module in (overview, runners, workers, jobs, results):
        module.register(site)
