"""The funnel as a service: jobs and evaluations API, webhooks, tenants, metrics and a dashboard.

``create_app(settings, providers=...)`` builds the FastAPI app; ``imagefunnel serve`` runs it with
in-process workers and the embedded emulated market.
"""

from imagefunnel.service.app import create_app
from imagefunnel.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
