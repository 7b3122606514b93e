"""``python -m services.projections``: the projections service on its configured host and port."""

from eventkit.http.server import run_service
from services.projections.bootstrap import build_app
from services.projections.settings import ProjectionsSettings

if __name__ == "__main__":
    run_service(ProjectionsSettings, build_app)
