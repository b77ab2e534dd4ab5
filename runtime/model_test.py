"""The connection test of a model configuration (POST /api/models/{id}/test/): one real call through the
broker's client code. Apart from runtime.model_check, which the broker itself uses."""
import asyncio
import time

from autogen_core.models import UserMessage

from .broker import ModelFailed, build_client
from .model_check import describe_failure, endpoint_of


def model_test(config: dict, *, timeout_seconds: float) -> dict:
    """One real call through the broker's client code (private-address rules included):
    {ok, latency_ms, error: {code, message} | null}. Blocking; runs its own event loop."""
    return asyncio.run(_model_test(config, timeout_seconds))


async def _model_test(config: dict, timeout_seconds: float) -> dict:
    name, endpoint = config.get("name", "model"), endpoint_of(config)
    started = time.monotonic()
    client = None
    try:
        client = build_client(config, max_retries=0)
        result = await asyncio.wait_for(
            client.create([UserMessage(content="Reply with the word OK.", source="user")],
                          extra_create_args={"max_tokens": 5} if config.get("provider") == "openai" else {}),
            timeout_seconds,
        )
        del result
        error = None
    except ModelFailed as exc:
        error = {"code": "configuration_error", "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - every failure is the answer
        failure = describe_failure(exc, timeout_seconds=timeout_seconds)
        error = {"code": failure.code, "message": failure.message(name, endpoint)}
    finally:
        if client is not None:
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    return {"ok": error is None, "latency_ms": latency_ms, "error": error}
