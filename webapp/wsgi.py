import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
application = get_wsgi_application()

# Import every view now, while the worker boots, not in its first request (about 0.5 s: the URL configuration pulls
# in the API, the schema generator and numpy), which would otherwise hold up every request that arrives meanwhile.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018
