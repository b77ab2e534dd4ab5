"""Everything under /admin/ needs what the admin site's own pages need: an active staff user whose session was
verified by a second factor (adminpanel.site). The RQ dashboard (/admin/rq/, django-rq's views under the admin)
checks only `is_staff` itself; this closes that path for a session opened with a password alone."""
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.urls import reverse

OPEN_PATHS = ("login/", "logout/", "jsi18n/")


class AdminSecondFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if path.startswith("/admin/") and not path[len("/admin/"):].startswith(OPEN_PATHS):
            if not admin.site.has_permission(request):
                return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        return self.get_response(request)
