"""``python -m services.audit``: the audit service on its configured host and port."""

from eventkit.http.server import run_service
from services.audit.bootstrap import build_app
from services.audit.settings import AuditSettings

if __name__ == "__main__":
    run_service(AuditSettings, build_app)
