"""``python -m services.invitations``: the invitations service on its configured host and port."""

from eventkit.http.server import run_service
from services.invitations.bootstrap import build_app
from services.invitations.settings import InvitationsSettings

if __name__ == "__main__":
    run_service(InvitationsSettings, build_app)
