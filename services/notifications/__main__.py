"""``python -m services.notifications``: the service on its configured host and port."""

from eventkit.http.server import run_service
from services.notifications.bootstrap import build_app
from services.notifications.settings import NotificationsSettings

if __name__ == "__main__":
    run_service(NotificationsSettings, build_app)
