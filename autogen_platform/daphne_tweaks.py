"""How the platform wants daphne (Twisted) to treat HTTP requests before Django sees them.

Twisted parses form bodies (multipart, urlencoded) into its own `request.args`, which daphne never
uses: it hands Django the raw body. A malformed multipart body made Twisted answer a bare 400 with
an empty body, outside the error envelope; parsing it also cost memory for nothing. With parsing
off, every body reaches Django, which answers in the envelope (a form body: 415, JSON only).

Several daphne processes accept on one listening socket (runplatform, WEB_PROCESSES). Twisted accepts up
to 100 connections, growing, each time the socket is readable, so whichever process woke first took a
whole burst of connections (measured: one of two served 2.5 times the other's requests while clients
waited on it). One accept per wake-up lets the process that is free come back for the next one first:
the connections follow the free CPU. (One socket each with SO_REUSEPORT would spread them by address,
but a stuck process would then keep its share waiting; with one socket the others serve them all.)
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
    _accept_one_at_a_time()


def _accept_one_at_a_time() -> None:
    try:
        from twisted.internet import tcp
    except ImportError:
        return
    original = tcp.Port.doRead

    def doRead(self):
        self.numberAccepts = 1  # Twisted raises it after each full batch; reset before every batch
        return original(self)

    tcp.Port.doRead = doRead
