"""``python -m services.identity``: the identity service on its configured host and port."""

from eventkit.http.server import run_service
from services.identity.bootstrap import build_app
from services.identity.settings import IdentitySettings

if __name__ == "__main__":
    run_service(IdentitySettings, build_app)
