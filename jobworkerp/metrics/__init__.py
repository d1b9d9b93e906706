"""Prometheus metrics on METRICS_ADDR (off when unset); each server process serves its own.

`recorder.py` counts as things happen (the job lifecycle's observer, gRPC calls), `sampled.py`
reads at scrape time (running jobs, queue depth, runner-host restarts), `http.py` serves
`GET /metrics` on trio, and `exporter.py` puts them together for one process.
"""
