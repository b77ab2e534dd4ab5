"""How the platform wants daphne (Twisted) to treat HTTP requests before Django sees them.

Twisted parses form bodies (multipart, urlencoded) into its own `request.args`, which daphne never
uses: it hands Django the raw body. A malformed multipart body made Twisted answer a bare 400 with
an empty body, outside the error envelope; parsing it also cost memory for nothing. With parsing
off, every body reaches Django, which answers in the envelope (a form body: 415, JSON only).
"""


def install() -> None:
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # served by another ASGI server
        return
    if getattr(WebRequest, "_platform_no_form_parsing", False):
        return
    original_init = WebRequest.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    WebRequest.__init__ = __init__
    WebRequest._platform_no_form_parsing = True
