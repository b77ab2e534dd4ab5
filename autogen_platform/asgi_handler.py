"""Django's ASGI handler, with the thread hops of a synchronous view cut to one.

Django's own ASGIHandler serves a synchronous view (every view here but the SSE stream) through its
asynchronous middleware chain: each middleware that supports both modes runs its process_request,
process_view and process_response through sync_to_async, and a synchronous-only one in the middle
switches back through async_to_sync: about ten hand-overs between daphne's loop and a thread per
request. And each request gets a thread of its own (asgiref's ThreadSensitiveContext makes a new
single-thread executor per request and another thread to join it at the end).

Here a request whose view is synchronous runs the synchronous middleware chain (the one a WSGI
server runs: same middleware, same order) in one hand-over, on a thread kept from one request to the
next; an asynchronous view (tasks.streams) gets Django's asynchronous chain, unchanged. Each request
still has a thread to itself while it runs: threads are leased from a pool and never shared by two
requests at once, so a request waiting on the database holds up no other.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.urls import Resolver404, get_resolver, get_urlconf

# Idle request threads kept for the next requests (more are made when more requests run at once).
IDLE_THREADS = 8


class _SyncChain(BaseHandler):
    """The synchronous middleware chain and view (what WSGIHandler.get_response runs)."""

    def __init__(self):
        super().__init__()
        self.load_middleware(is_async=False)


class PlatformASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self._sync = _SyncChain()
        self._idle: list[ThreadPoolExecutor] = []
        self._idle_lock = threading.Lock()
        self._is_async: dict = {}  # view callable -> is it a coroutine function

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._lease()
        try:
            # every thread-sensitive call of this request (signals, the view, response.close) on its thread
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self._give_back(executor)

    def _lease(self) -> ThreadPoolExecutor:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(1, thread_name_prefix="web-request")

    def _give_back(self, executor: ThreadPoolExecutor) -> None:
        with self._idle_lock:
            if len(self._idle) < IDLE_THREADS:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)

    async def run_get_response(self, request):
        if self._view_is_async(request):
            return await super().run_get_response(request)
        response = await sync_to_async(self._sync.get_response, thread_sensitive=True)(request)
        response._handler_class = self.__class__
        return response

    def _view_is_async(self, request) -> bool:
        try:
            view = get_resolver(get_urlconf()).resolve(request.path_info).func
        except Resolver404:
            return False  # the synchronous chain answers the 404
        known = self._is_async.get(view)
        if known is None:
            known = self._is_async[view] = iscoroutinefunction(view)
        return known
