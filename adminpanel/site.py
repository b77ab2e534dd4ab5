"""The Django admin site of the platform: a staff password AND a TOTP code (django-otp).

The rule, for everything under /admin/ (the RQ dashboard included, see adminpanel.middleware): an active staff user
whose session was verified by one of the user's confirmed TOTP devices at login. A password alone (from
/admin/login/ without a code, or from the browsable API's /api-auth/login/) opens nothing here. Devices are
enrolled with `manage.py admin_otp enrol USERNAME` (seed_demo enrols the demo admin and prints the enrolment once).
"""
from django import forms
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import signin


class PlatformAdminAuthenticationForm(OTPAdminAuthenticationForm):
    """django-otp's admin login form, with the staff user's only TOTP device chosen for them, and every refused
    second factor audited (a wrong password is audited by accounts.signin)."""

    otp_token = forms.CharField(required=False, label="Authenticator code",
                                widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}))

    def _chosen_device(self, user):
        device = super()._chosen_device(user)
        if device is None:
            devices = list(TOTPDevice.objects.devices_for_user(user, confirmed=True)[:2])
            device = devices[0] if len(devices) == 1 else None
        return device

    def clean_otp(self, user):
        try:
            super().clean_otp(user)
        except forms.ValidationError as exc:
            if user is not None:
                reason = "second_factor_missing" if not self.cleaned_data.get("otp_token") else "second_factor_invalid"
                if not TOTPDevice.objects.devices_for_user(user, confirmed=True).exists():
                    reason = "second_factor_not_enrolled"
                signin.audit_failure(self.request, user.get_username(), reason)
            raise exc


class PlatformAdminSite(OTPAdminSite):
    login_form = PlatformAdminAuthenticationForm
    site_header = "AutoGen platform administration"
    site_title = "AutoGen platform admin"

    def __init__(self, name="admin"):
        super().__init__(name)
