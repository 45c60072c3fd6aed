"""The web side: member pages, editor pages and operator endpoints (``create_app``)."""

from digest.web.app import create_app, create_metrics_app

__all__ = ["create_app", "create_metrics_app"]
