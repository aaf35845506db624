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
# the "flask-limiter" logger) and, while it does, pings Redis on a limited request 1, 2,
# 4 … 32 s after its last look, logging "Rate limit storage recovered" when it answers.
# No in_memory_fallback list, so each route keeps its own limits rather than one list for
# all. A Redis that takes connections but never answers (hung) costs a second a look, not
# redis-py's 5 s: the request that finds it so waits two (the fall, then the first look),
# one request at each later look one. Redis answers a counter in well under a millisecond.
limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[],
    in_memory_fallback_enabled=True,
    storage_options={"socket_connect_timeout": 1, "socket_timeout": 1},
)
