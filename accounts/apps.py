from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Customers and access"

    def ready(self):
        from . import signin, tokens  # noqa: F401 - connects the sign-in audit and token revocation receivers
