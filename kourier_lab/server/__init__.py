"""The full server: app (routes, handlers), config, session logic, workers."""
from .app import App, Request, Response, benchmark_app  # noqa: F401
from .config import ServerConfig  # noqa: F401
