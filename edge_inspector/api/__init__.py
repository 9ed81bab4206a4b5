"""The station's window: an HTTP API (FastAPI on uvicorn), Prometheus metrics, a local page.

``service.ApiService`` is a ``lifecycle.Service``; ``feed.Feed`` is an output at the end of the
outputs that hands each decision to the metrics and to the live feed without ever blocking the
worker. docs/api.md describes the endpoints.
"""
