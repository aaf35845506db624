"""The extension objects, unbound; create_app() binds them to the app."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from announcements.models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# With Redis as the storage (REDIS_URL), a Redis that stops answering must not fail the
# requests it limits: Flask-Limiter then counts the same limits in this process's memory,
# logs "Rate limit storage unreachable - falling back to in-memory storage" (a warning of
# the "flask-limiter" logger) and, while it does, pings Redis again after 1, 2, 4 … 32 s,
# logging "Rate limit storage recovered" when it answers. No in_memory_fallback list, so
# each route keeps its own limits rather than one list for all. A Redis host that takes
# connections but never answers holds a request at most a second: Redis answers a
# counter in well under a millisecond, where redis-py would wait 5 s.
limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[],
    in_memory_fallback_enabled=True,
    storage_options={"socket_connect_timeout": 1, "socket_timeout": 1},
)
