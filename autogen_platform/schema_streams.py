"""The live streams in the OpenAPI schema (a drf-spectacular postprocessing hook).

Neither stream is a DRF view, so the generator cannot see them:
- `GET /api/tasks/{id}/stream/` (tasks.streams, server-sent events) becomes an ordinary path whose 200 answer is
  `text/event-stream`; each message's `data:` is a TaskEvent, described by the `TaskStreamMessage` component and
  the operation's `x-sse-events` list;
- the WebSockets `/ws/tasks/{id}/` and `/ws/events/` (tasks.consumers) have no place in OpenAPI 3.0 paths: their
  frames are named components (`WsTaskClientFrame`, `WsTaskServerFrame`, `WsEventsClientFrame`,
  `WsEventsServerFrame`, one component per frame shape), and the top-level `x-websockets` extension says, per
  path, how to authenticate, which frames go each way, and the close codes.
The shapes here are those tasks.consumers and tasks.streams send (their docstrings and docs/api.md say the same);
tests/test_schema.py checks them against frames from a running stream.
"""

ERROR = "#/components/schemas/ErrorEnvelope"
TASK_EVENT = "#/components/schemas/TaskEvent"
TASK_STATUS = "#/components/schemas/TaskStatusEnum"
# The event types as the TaskEvent component declares them (whatever name its enum is given).
EVENT_TYPE = "#/components/schemas/TaskEvent/properties/type"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _frame(description: str, properties: dict, required: list[str]) -> dict:
    return {"type": "object", "description": description, "properties": properties, "required": required}


def _type(value: str) -> dict:
    return {"type": "string", "enum": [value]}


NOTIFICATION = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "message": {"type": "string"},
                   "level": {"type": "string", "enum": ["info", "warning", "critical"]},
                   "created_at": {"type": "string", "format": "date-time"}},
    "required": ["id", "message", "level", "created_at"],
}
SEQ = {"type": "integer", "minimum": 1, "description": "The customer's notice sequence (from 1, no gaps)."}

COMPONENTS = {
    # Server-sent events
    "TaskStreamMessage": _frame(
        "One server-sent event of GET /api/tasks/{id}/stream/, as the lines `id: SEQ`, `event: TYPE`, `data: JSON` "
        "and a blank line. The stream starts with `retry: 2000`, sends `: keepalive` comment lines when quiet, and "
        "ends after the task's final status event.",
        {"id": {"type": "integer", "description": "The event's seq: send it back as Last-Event-ID to resume."},
         "event": {"allOf": [{"$ref": EVENT_TYPE}], "description": "The event's type."},
         "data": {"allOf": [{"$ref": TASK_EVENT}], "description": "The stored event as JSON on one line."}},
        ["id", "event", "data"]),
    # /ws/tasks/{id}/: client -> server
    "WsAfterFrame": _frame(
        "Sent first, within a second of connecting: replay the events with a higher seq (0: all). Without it the "
        "history is sent from seq 1.", {"after": {"type": "integer", "minimum": 0}}, ["after"]),
    "WsInputFrame": _frame(
        "Answers a task waiting in input_required, as POST /api/tasks/{id}/input/ does: {\"text\"} for an input "
        "request, {\"approve\"} for an approval. Answered with an `input_accepted` frame or an error frame.",
        {"input": {"type": "object", "properties": {"text": {"type": "string"}, "approve": {"type": "boolean"}},
                   "additionalProperties": False}}, ["input"]),
    "WsPingFrame": _frame("An application keepalive; answered with {\"type\": \"pong\"}.", {"type": _type("ping")},
                          ["type"]),
    "WsTaskClientFrame": {"oneOf": [_ref("WsAfterFrame"), _ref("WsInputFrame"), _ref("WsPingFrame")],
                          "description": "A JSON text frame a client sends on /ws/tasks/{id}/."},
    # /ws/tasks/{id}/: server -> client
    "WsEventFrame": _frame("A stored event, in seq order, never twice.",
                           {"type": _type("event"), "event": {"$ref": TASK_EVENT}}, ["type", "event"]),
    "WsStatusFrame": _frame("The task's status on connecting, then each change.",
                            {"type": _type("status"), "status": {"$ref": TASK_STATUS}}, ["type", "status"]),
    "WsTokenFrame": _frame("Streamed model tokens while a model writes (not stored: the `message` event that "
                           "follows holds the whole text).",
                           {"type": _type("token"), "source": {"type": "string"}, "text": {"type": "string"}},
                           ["type", "source", "text"]),
    "WsInputAcceptedFrame": _frame("The answer of a WsInputFrame was taken: the task is queued to resume.",
                                   {"type": _type("input_accepted"), "status": {"$ref": TASK_STATUS}},
                                   ["type", "status"]),
    "WsPongFrame": _frame("The answer to a ping frame.", {"type": _type("pong")}, ["type"]),
    "WsErrorFrame": {"allOf": [{"$ref": ERROR}],
                     "description": "A client frame that could not be used (the REST API's envelope and codes), or "
                                    "token_invalid just before a 4401 close when the token expires."},
    "WsTaskServerFrame": {"oneOf": [_ref(n) for n in ("WsEventFrame", "WsStatusFrame", "WsTokenFrame",
                                                     "WsInputAcceptedFrame", "WsPongFrame", "WsErrorFrame")],
                          "description": "A JSON text frame the server sends on /ws/tasks/{id}/."},
    # /ws/events/: client -> server
    "WsResumeFrame": _frame("Send the stored notices after `after`, then `ready`, then the live ones.",
                            {"type": _type("resume"), "after": {"type": "integer", "minimum": 0}},
                            ["type", "after"]),
    "WsEventsClientFrame": {"oneOf": [_ref("WsResumeFrame"), _ref("WsPingFrame")],
                            "description": "A JSON text frame a client sends on /ws/events/."},
    # /ws/events/: server -> client
    "WsTaskStatusNotice": _frame("A status change of one of the customer's tasks.",
                                 {"type": _type("task_status"), "task": {"type": "integer"},
                                  "status": {"$ref": TASK_STATUS}, "seq": SEQ}, ["type", "task", "status", "seq"]),
    "WsBroadcastNotice": _frame("A platform operator's broadcast (to every customer).",
                                {"type": _type("broadcast"), "notification": NOTIFICATION, "seq": SEQ},
                                ["type", "notification", "seq"]),
    "WsKillswitchNotice": _frame(
        "The killswitch engaged or released, globally or for this customer.",
        {"type": _type("killswitch"), "engaged": {"type": "boolean"},
         "scope": {"type": "string", "enum": ["global", "customer"]},
         "customer": {"type": "integer", "nullable": True}, "reason": {"type": "string"},
         "notification": NOTIFICATION, "seq": SEQ},
        ["type", "engaged", "scope", "customer", "reason", "notification", "seq"]),
    "WsReadyFrame": _frame("Every notice through `seq` was sent (after connecting and after each resume); live "
                           "ones follow. 0: the customer has no notices yet.",
                           {"type": _type("ready"), "seq": {"type": "integer", "minimum": 0}}, ["type", "seq"]),
    "WsGapFrame": _frame("A resume asked for notices no longer kept (after+1 .. missing_through): reload state "
                         "through the REST API.",
                         {"type": _type("gap"), "after": {"type": "integer"}, "missing_through": {"type": "integer"}},
                         ["type", "after", "missing_through"]),
    "WsEventsServerFrame": {"oneOf": [_ref(n) for n in ("WsTaskStatusNotice", "WsBroadcastNotice",
                                                       "WsKillswitchNotice", "WsReadyFrame", "WsGapFrame",
                                                       "WsPongFrame", "WsErrorFrame")],
                            "description": "A JSON text frame the server sends on /ws/events/."},
}

_AUTH = ("An access token of a customer's user: `?token=ACCESS`, or the subprotocols [\"bearer\", ACCESS] "
         "(Sec-WebSocket-Protocol), which keeps it out of URLs and logs.")
_CLOSE_AUTH = {"4401": "a missing, bad or admin token, or the token expired while the socket was open"}

WEBSOCKETS = {
    "/ws/tasks/{id}/": {
        "summary": "One task's events live, with lossless resume; answers to input requests",
        "authentication": _AUTH,
        "client_frames": _ref("WsTaskClientFrame"),
        "server_frames": _ref("WsTaskServerFrame"),
        "close_codes": {**_CLOSE_AUTH, "4404": "not a task of this customer (or no such stream path)",
                        "1000": "the task finished: its history and final status were sent"},
    },
    "/ws/events/": {
        "summary": "The customer's notices (task status changes, broadcasts, killswitch), resumable by seq",
        "authentication": _AUTH,
        "query": {"after": "resume after this notice seq (as a resume frame does)"},
        "client_frames": _ref("WsEventsClientFrame"),
        "server_frames": _ref("WsEventsServerFrame"),
        "close_codes": dict(_CLOSE_AUTH),
    },
}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ERROR}}}}


SSE_OPERATION = {
    "operationId": "tasks_stream_retrieve",
    "summary": "The task's events as server-sent events (text/event-stream), live until it finishes",
    "description": (
        "The WebSocket /ws/tasks/{id}/ for clients without WebSocket: the stored events with seq > Last-Event-ID "
        "(or `after`), then each new one as it is stored, until the final status event ends the response. Each "
        "message is `id: SEQ` / `event: TYPE` / `data: TaskEvent JSON` (the TaskStreamMessage component; "
        "`x-sse-events` lists the event names). Reconnect with Last-Event-ID to resume without losing or repeating "
        "an event. Authenticated like the REST API, or with `?token=` (a browser's EventSource cannot set headers)."
    ),
    "tags": ["tasks"],
    "parameters": [
        {"in": "path", "name": "id", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        {"in": "query", "name": "after", "schema": {"type": "integer", "minimum": 0, "default": 0},
         "description": "Only events with a higher seq (Last-Event-ID wins when both are given)."},
        {"in": "header", "name": "Last-Event-ID", "schema": {"type": "integer", "minimum": 0},
         "description": "The last seq received; an EventSource sends it by itself when it reconnects."},
        {"in": "query", "name": "token", "schema": {"type": "string"},
         "description": "An access token, for clients that cannot send an Authorization header."},
    ],
    "security": [{"customerJWT": []}, {"customerApiKey": []}],
    "responses": {
        "200": {
            "description": "An event stream: `retry: 2000`, then one message per event, `: keepalive` comments when "
                           "quiet; it ends after the final status event.",
            "content": {"text/event-stream": {"schema": {
                "type": "string",
                "description": "Lines of server-sent events; each message's fields are a TaskStreamMessage.",
                "example": 'id: 1\nevent: status\ndata: {"seq":1,"type":"status","source":"","content":'
                           '{"status":"queued"},"created_at":"2026-01-01T00:00:00Z"}\n\n',
            }}},
            "headers": {"Cache-Control": {"schema": {"type": "string", "enum": ["no-cache"]}}},
        },
        "400": _error("validation_error: `after` / Last-Event-ID is not a non-negative integer"),
        "401": _error("not_authenticated (no credentials) or token_invalid"),
        "403": _error("permission_denied: the account is not a customer's user"),
        "404": _error("not_found: no such task for this customer"),
        "500": _error("internal_error: no stack trace; details.request_id identifies the request"),
    },
    "x-sse-events": {"message_schema": _ref("TaskStreamMessage"), "event_names": {"$ref": EVENT_TYPE}},
}


def add_live_streams(result, generator, request, public):
    """Postprocessing hook: the SSE path, the stream components and `x-websockets` (see the module docstring)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in COMPONENTS.items():
        schemas.setdefault(name, schema)
    result.setdefault("paths", {})["/api/tasks/{id}/stream/"] = {"get": SSE_OPERATION}
    result["x-websockets"] = WEBSOCKETS
    return result
