"""AutoGen AgentChat component JSON (what `dump_component()` writes, what `load_component()` reads) for
model configurations and agents: export, and import as plain data.

Export writes the component of what a task runs (runtime/agentchild/build.py): an AssistantAgent with
the agent's model client, system message and tools; provider keys are never written. The built-in
tools are FunctionTools whose source is self-contained, so AutoGen loads and runs them as they are.

Import NEVER calls `load_component` and never imports a module a document names: in AgentChat 0.7.5
that imports any module a `provider` string names and `exec`s FunctionTool source. The JSON is read
as data against an explicit allow-list of provider strings and fields; everything else is refused
with a `validation_error` whose details name its path (`config.participants[1].provider`). Fields the
platform decides for itself (streaming, tool iterations...) are accepted and listed in `ignored`, so
nothing is dropped silently.
"""
import ast
import inspect
import math
import textwrap
from urllib.parse import urlsplit

from accounts.crypto import decrypt
from autogen_platform.errors import ValidationFailed
from core.services import audit_record
from runtime.agentchild import tools as registry
from runtime.agentchild.names import agent_identifier
from runtime.tools import tool_names

from .component_tools import DocumentTools, read_function_tool
from .models import Agent, ModelConfig
from .services import agent_create, model_config_create

# Provider strings, as AgentChat 0.7.5 dumps them, and the short names its loader also knows.
ASSISTANT = "autogen_agentchat.agents.AssistantAgent"
CODE_EXECUTOR = "autogen_agentchat.agents.CodeExecutorAgent"
USER_PROXY = "autogen_agentchat.agents.UserProxyAgent"
OPENAI = "autogen_ext.models.openai.OpenAIChatCompletionClient"
REPLAY = "autogen_ext.models.replay.ReplayChatCompletionClient"
FUNCTION_TOOL = "autogen_core.tools.FunctionTool"
UNBOUNDED_CONTEXT = "autogen_core.model_context.UnboundedChatCompletionContext"
STATIC_WORKBENCHES = ("autogen_core.tools.StaticWorkbench", "autogen_core.tools.StaticStreamWorkbench")
LOCAL_EXECUTOR = "autogen_ext.code_executors.local.LocalCommandLineCodeExecutor"
DOCKER_EXECUTOR = "autogen_ext.code_executors.docker.DockerCommandLineCodeExecutor"
CODE_TOOL = "autogen_ext.tools.code_execution.PythonCodeExecutionTool"
MODEL_ALIASES = {"OpenAIChatCompletionClient": OPENAI, "openai_chat_completion_client": OPENAI}

REPLAY_MODEL_INFO = {"vision": False, "function_calling": True, "json_output": True, "family": "unknown",
                     "structured_output": False}
MODEL_INFO_KEYS = ("vision", "function_calling", "json_output", "family", "structured_output",
                   "multiple_system_messages")
DEFAULT_DESCRIPTION = "An agent that provides assistance with ability to use tools."
# The helpers each built-in tool's exported source carries (FunctionTool runs the first `def`).
TOOL_HELPERS = {"calculator": ("_BINOPS", "_UNARY", "_FUNCS", "_CONSTS", "_eval")}
TOOL_IMPORTS = {"calculator": ["ast", "math", "operator"], "current_utc_time": [
    {"module": "datetime", "imports": ["datetime", "timezone"]}], "word_count": []}


def component(provider: str, component_type: str, config: dict, *, label: str, description: str = "",
              version: int = 1) -> dict:
    return {"provider": provider, "component_type": component_type, "version": version,
            "component_version": version, "description": description, "label": label, "config": config}


# Export


def model_component(model_config) -> dict:
    """The model client of a configuration, without its key (the user sets OPENAI_API_KEY or api_key)."""
    if model_config.provider == "replay":
        info = {**REPLAY_MODEL_INFO, **(model_config.model_info or {})}
        return component(REPLAY, "replay_chat_completion_client", {"chat_completions": list(model_config.responses),
                                                            "model_info": info},
                         label="ReplayChatCompletionClient",
                         description="A mock chat completion client that replays predefined responses using an index-based approach.")
    config = {"model": model_config.model}
    if model_config.base_url:
        config["base_url"] = model_config.base_url
    if model_config.model_info:
        config["model_info"] = {**REPLAY_MODEL_INFO, "json_output": False, **model_config.model_info}
    return component(OPENAI, "model", config, label="OpenAIChatCompletionClient",
                     description="Chat completion client for OpenAI hosted models.")


def _module_source(module, name: str) -> str:
    value = getattr(module, name)
    if inspect.isfunction(value):
        return textwrap.dedent(inspect.getsource(value))
    lines = inspect.getsource(module).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name} = "))
    end = start + 1
    while end < len(lines) and (lines[end].startswith((" ", "}", ")", "]")) or not lines[end].strip()):
        end += 1
    return "\n".join(lines[start:end]).rstrip()


def custom_tool_source(definition: dict) -> tuple[str, list]:
    """A customer tool's (source_code, global_imports) as FunctionTool loads them: AutoGen runs its imports
    first, then the text, and takes the function of the first `def` in it; so the module's top-level imports
    become global_imports (annotations may need them when the `def` runs), the tool's own function (found with
    ast: the source is parsed here, never run) comes first and the rest (helpers, constants) after it."""
    source = definition["source"]
    tree = ast.parse(source)
    node = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name == definition["name"]][-1]
    lines = source.splitlines(keepends=True)
    taken = set(range(min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1, node.end_lineno))
    function = "".join(lines[i] for i in sorted(taken))
    imports = []
    for statement in tree.body:
        if isinstance(statement, ast.Import):
            imports += [{"name": a.name, "alias": a.asname} if a.asname else a.name for a in statement.names]
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module \
                and all(a.name != "*" for a in statement.names):
            imports.append({"module": statement.module, "imports": [
                {"name": a.name, "alias": a.asname} if a.asname else a.name for a in statement.names]})
        else:
            continue
        taken |= set(range(statement.lineno - 1, statement.end_lineno))
    rest = "".join(line for i, line in enumerate(lines) if i not in taken).strip()
    return function.rstrip() + "\n" + (f"\n\n{rest}\n" if rest else ""), imports


def tool_component(name: str, definition: dict | None = None) -> dict:
    """A built-in tool, or (definition: its frozen definition) a customer's tool, as a FunctionTool (an http
    tool: AutoGen's HttpTool, without its secret headers)."""
    if definition is not None and definition.get("kind") == "http":
        return http_tool_component(definition)
    if definition is not None:
        source, imports = custom_tool_source(definition)
        return component(FUNCTION_TOOL, "tool", {
            "source_code": source, "name": name, "description": definition["description"],
            "global_imports": imports, "has_cancellation_support": False,
        }, label="FunctionTool", description="Create custom tools by wrapping standard Python functions.")
    tool = registry.TOOLS[name]
    source = textwrap.dedent(inspect.getsource(tool["function"]))
    helpers = [_module_source(registry, h) for h in TOOL_HELPERS.get(name, ())]
    if helpers:
        source = source.rstrip() + "\n\n\n" + "\n\n\n".join(helpers) + "\n"
    return component(FUNCTION_TOOL, "tool", {
        "source_code": source, "name": name, "description": tool["description"],
        "global_imports": TOOL_IMPORTS.get(name, []), "has_cancellation_support": False,
    }, label="FunctionTool", description="Create custom tools by wrapping standard Python functions.")


def http_tool_component(definition: dict) -> dict:
    """A customer's http tool as AutoGen's HttpTool (autogen_ext.tools.http), which templates the path from the
    arguments and sends the rest as query (GET, DELETE) or JSON body like the platform. Its secret headers are
    not exported (their values never leave the platform): set them in the loaded tool's headers."""
    parts = urlsplit(definition["url"])
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return component("autogen_ext.tools.http.HttpTool", "tool", {
        "name": definition["name"], "description": definition.get("description") or None,
        "scheme": parts.scheme, "host": parts.hostname, "port": parts.port or (443 if parts.scheme == "https" else 80),
        "path": path, "method": definition.get("method") or "POST", "headers": dict(definition.get("headers") or {}),
        "json_schema": definition.get("parameters") or {"type": "object", "properties": {}},
        "return_type": "text", "timeout": float(definition.get("timeout_seconds") or 30),
    }, label="HttpTool", description="A wrapper for using an HTTP server as a tool.")


def assistant_component(*, ident: str, description: str, system_message: str, model_config, tools: list,
                        handoffs: list | None = None, code_timeout: int | None = None,
                        tool_definitions: list | None = None) -> dict:
    """An AssistantAgent as the sandboxed child builds it (with `code_timeout`: also AgentChat's code tool,
    as a swarm or graph member with code_execution runs its code; tool_definitions: those of its customer
    tools)."""
    custom = {d["name"]: d for d in tool_definitions or []}
    tool_components = [tool_component(t, custom.get(t)) for t in tools]
    if code_timeout is not None:
        tool_components.append(code_tool_component(code_timeout))
    config = {
        "name": ident,
        "model_client": model_component(model_config),
        "workbench": [component("autogen_core.tools.StaticStreamWorkbench", "workbench",
                                {"tools": tool_components, "tool_overrides": {}},
                                label="StaticStreamWorkbench",
                                description="A workbench that provides a static set of tools that do not change after "
                                            "each tool execution, and supports streaming results.")],
        "model_context": component(UNBOUNDED_CONTEXT, "chat_completion_context", {},
                                   label="UnboundedChatCompletionContext",
                                   description="An unbounded chat completion context that keeps a view of the all the messages."),
        "description": description or DEFAULT_DESCRIPTION,
        "system_message": system_message or None,
        "model_client_stream": True,
        "reflect_on_tool_use": bool(tool_components),
        "tool_call_summary_format": "{result}",
        "max_tool_iterations": 5 if tool_components else 1,
        "metadata": {},
    }
    if handoffs:
        # As AgentChat's Handoff(target=...) dumps itself (a bare string does not load back).
        config["handoffs"] = [{"target": t, "description": f"Handoff to {t}.", "name": f"transfer_to_{t}".lower(),
                               "message": f"Transferred to {t}, adopting the role of {t} immediately."}
                              for t in handoffs]
    if config["system_message"] is None:
        del config["system_message"]
    return component(ASSISTANT, "agent", config, label="AssistantAgent", version=2,
                     description="An agent that provides assistance with tool use.")


def _local_executor(timeout: int) -> dict:
    return component(LOCAL_EXECUTOR, "code_executor", {"timeout": max(1, int(timeout)), "work_dir": ".",
                                                       "functions_module": "functions", "cleanup_temp_files": True},
                     label="LocalCommandLineCodeExecutor",
                     description="A code executor class that executes code through a local command line environment.")


def code_tool_component(timeout: int) -> dict:
    """AgentChat's code tool (in the platform its code runs inside the task's sandbox)."""
    return component(CODE_TOOL, "tool", {"executor": _local_executor(timeout)}, label="PythonCodeExecutionTool",
                     description="A tool that executes Python code in a code executor and returns output.")


def executor_component(ident: str, timeout: int) -> dict:
    """The code executor agent that runs what `ident` writes (in the platform: inside the task's sandbox)."""
    executor = _local_executor(timeout)
    return component(CODE_EXECUTOR, "agent", {
        "name": f"{ident}_executor", "code_executor": executor,
        "description": f"Runs the Python and shell code blocks that {ident} writes and reports the output.",
        "model_client_stream": False,
    }, label="CodeExecutorAgent", description="Agent that executes code.")


def user_proxy_component(ident: str, description: str) -> dict:
    """A member a person answers for (human_input). AgentChat's loader gives it `input()` on the console."""
    return component(USER_PROXY, "agent", {"name": ident, "description": description or "A human user"},
                     label="UserProxyAgent",
                     description="An agent that can represent a human user through an input function.")


def agent_export(agent) -> dict:
    """GET /api/agents/{id}/component/: an AssistantAgent; an agent with code_execution or human_input runs as
    a RoundRobinGroupChat of the assistant, its CodeExecutorAgent and (human_input) a UserProxyAgent, as
    runtime/agentchild/build.py builds it, so that is what it exports."""
    taken = set()
    ident = agent_identifier(agent.name, taken)
    assistant = assistant_component(ident=ident, description=agent.description, system_message=agent.system_message,
                                    model_config=agent.model, tools=list(agent.tools),
                                    tool_definitions=agent.behaviour().get("tool_definitions"))
    if not agent.code_execution and not agent.human_input:
        return assistant
    participants = [assistant]
    if agent.code_execution:
        participants.append(executor_component(ident, int((agent.limits or {}).get("timeout_seconds") or 60)))
    if agent.human_input:
        participants.append(user_proxy_component(agent_identifier("person", taken), "The person who gave the task"))
    # the child's limits (build.py): TERMINATE or 12 messages with code, 20 with a person
    termination = or_condition([text_mention_condition("TERMINATE"),
                                max_messages_condition(20 if agent.human_input else 12)])
    return component("autogen_agentchat.teams.RoundRobinGroupChat", "team", {
        "name": ident, "participants": participants,
        "termination_condition": termination, "emit_team_events": False,
    }, label="RoundRobinGroupChat",
        description="A team that runs a group chat with participants taking turns in a round-robin fashion to publish a message to all.")


def max_messages_condition(n: int) -> dict:
    return component("autogen_agentchat.conditions.MaxMessageTermination", "termination",
                     {"max_messages": int(n), "include_agent_event": False}, label="MaxMessageTermination",
                     description="Terminate the conversation after a maximum number of messages have been exchanged.")


def text_mention_condition(text: str) -> dict:
    return component("autogen_agentchat.conditions.TextMentionTermination", "termination", {"text": text},
                     label="TextMentionTermination", description="Terminate the conversation if a specific text is mentioned.")


def or_condition(parts: list) -> dict:
    return component("autogen_agentchat.base.OrTerminationCondition", "termination", {"conditions": parts},
                     label="OrTerminationCondition")


# Import: the JSON read as data


class Problems:
    """Every refused part of a document, by path; `ignored` lists what the platform decides itself."""

    def __init__(self):
        self.items: dict[str, list[str]] = {}
        self.ignored: list[dict] = []
        self.tools = DocumentTools()  # the FunctionTools that become the customer's own tools

    def add(self, path: str, message: str) -> None:
        self.items.setdefault(path, []).append(message)

    def ignore(self, path: str, reason: str) -> None:
        self.ignored.append({"path": path, "reason": reason})

    def raise_if_any(self) -> None:
        if self.items:
            first = next(iter(self.items.items()))
            more = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise ValidationFailed(f"{first[0]}: {first[1][0]}{more}", details=dict(self.items))


def read_component(problems: Problems, path: str, data, kinds: tuple) -> tuple[str, dict] | None:
    """(provider, config) of a component whose component_type is one of `kinds`, or None (a problem noted)."""
    if not isinstance(data, dict):
        problems.add(path, "must be a component object {provider, component_type, config, ...}")
        return None
    allowed = {"provider", "component_type", "version", "component_version", "description", "label", "config"}
    for key in sorted(set(data) - allowed):
        problems.add(f"{path}.{key}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
    provider = data.get("provider")
    if not isinstance(provider, str) or not provider:
        problems.add(f"{path}.provider", "required: the component's class")
        return None
    component_type = data.get("component_type")
    if component_type is not None and component_type not in kinds:
        problems.add(f"{path}.component_type", f"expected {' or '.join(kinds)}, not {component_type!r}")
        return None
    config = data.get("config")
    if not isinstance(config, dict):
        problems.add(f"{path}.config", "required: an object")
        return None
    return MODEL_ALIASES.get(provider, provider), config


def check_keys(problems: Problems, path: str, config: dict, known: dict) -> None:
    """known: key -> None (used), or a reason (accepted, the platform decides: listed in ignored)."""
    for key in config:
        if key not in known:
            problems.add(f"{path}.{key}", f"not supported by this platform; supported: {', '.join(sorted(known))}")
        elif known[key] and config[key] not in (None, [], {}, False):
            problems.ignore(f"{path}.{key}", known[key])


def _text(problems, path, value, *, required=False, limit=None) -> str:
    if value is None:
        if required:
            problems.add(path, "required")
        return ""
    if not isinstance(value, str):
        problems.add(path, "must be a string")
        return ""
    if limit and len(value) > limit:
        problems.add(path, f"at most {limit} characters")
    return value


def read_model(problems: Problems, path: str, data) -> dict | None:
    """A model client component -> the fields of a model configuration (api_key included when given)."""
    read = read_component(problems, path, data, ("model", "chat_completion_client", "replay_chat_completion_client"))
    if read is None:
        return None
    provider, config = read
    cpath = f"{path}.config"
    if provider == REPLAY:
        check_keys(problems, cpath, config, {"chat_completions": None, "model_info": None})
        responses = config.get("chat_completions")
        if not isinstance(responses, list) or not responses or not all(isinstance(r, str) for r in responses):
            problems.add(f"{cpath}.chat_completions", "must be a non-empty list of strings (scripted CreateResults are not supported)")
            responses = []
        return {"provider": "replay", "model": "", "base_url": "", "api_key": None, "responses": responses,
                "model_info": _model_info(problems, f"{cpath}.model_info", config.get("model_info"), replay=True)}
    if provider == OPENAI:
        platform = "the platform sets it for each call"
        check_keys(problems, cpath, config, {
            "model": None, "base_url": None, "api_key": None, "model_info": None, "model_capabilities": None,
            "organization": "not used", "timeout": platform, "max_retries": platform, "temperature": platform,
            "top_p": platform, "max_tokens": platform, "frequency_penalty": platform, "presence_penalty": platform,
            "seed": platform, "stop": platform, "parallel_tool_calls": platform, "include_name_in_message": platform,
            "default_headers": "not used: the platform sends its own headers", "add_name_prefixes": platform,
            "stream_options": platform, "n": platform, "user": platform, "response_format": platform,
        })
        info = config.get("model_info") or config.get("model_capabilities")
        return {
            "provider": "openai",
            "model": _text(problems, f"{cpath}.model", config.get("model"), required=True, limit=200),
            "base_url": _text(problems, f"{cpath}.base_url", config.get("base_url"), limit=500),
            "api_key": _api_key(problems, f"{cpath}.api_key", config.get("api_key")),
            "model_info": _model_info(problems, f"{cpath}.model_info", info, replay=False),
            "responses": [],
        }
    problems.add(f"{path}.provider", f"model provider {provider!r} is not supported; supported: {OPENAI}, {REPLAY}")
    return None


def _api_key(problems, path, value) -> str | None:
    key = _text(problems, path, value) or None
    if key and set(key) == {"*"}:
        problems.ignore(path, "a masked key (as dump_component writes it) is no key: set it with PATCH /api/models/{id}/")
        return None
    return key


def _model_info(problems, path, info, *, replay: bool) -> dict:
    if info is None:
        return {}
    if not isinstance(info, dict):
        problems.add(path, "must be an object")
        return {}
    unknown = sorted(set(info) - set(MODEL_INFO_KEYS))
    for key in unknown:
        problems.add(f"{path}.{key}", f"unknown key; allowed: {', '.join(MODEL_INFO_KEYS)}")
    cleaned = {k: info[k] for k in MODEL_INFO_KEYS if k in info}
    if replay and cleaned == REPLAY_MODEL_INFO:
        return {}
    required = ("vision", "function_calling", "json_output", "family")
    if cleaned and not all(k in cleaned for k in required):
        cleaned = {**REPLAY_MODEL_INFO, "json_output": False, **cleaned}
    return cleaned


def read_tools(problems: Problems, path: str, config: dict, code_tools: list | None = None) -> list[str]:
    """An agent's tools (from `tools` or a static `workbench`) -> names of the platform's built-in tools.
    AgentChat's code tool is taken where a member runs code with it (swarm and graph teams: the caller
    passes `code_tools`, which gets its path), refused elsewhere."""
    found = []
    entries = []
    if isinstance(config.get("tools"), list):
        entries += [(f"{path}.tools[{i}]", t) for i, t in enumerate(config["tools"])]
    elif config.get("tools") is not None:
        problems.add(f"{path}.tools", "must be a list")
    workbenches = config.get("workbench")
    if workbenches is not None:
        if isinstance(workbenches, dict):
            workbenches = [workbenches]
        if not isinstance(workbenches, list):
            problems.add(f"{path}.workbench", "must be a list of workbenches")
            workbenches = []
        for i, bench in enumerate(workbenches):
            bpath = f"{path}.workbench[{i}]"
            read = read_component(problems, bpath, bench, ("workbench",))
            if read is None:
                continue
            provider, bconfig = read
            if provider not in STATIC_WORKBENCHES:
                problems.add(f"{bpath}.provider", f"workbench {provider!r} is not supported (MCP and other workbenches "
                                                  "do not run here); supported: tools of the platform")
                continue
            if bconfig.get("tool_overrides"):
                problems.add(f"{bpath}.config.tool_overrides", "not supported: tools keep their names and descriptions")
            tools = bconfig.get("tools") or []
            entries += [(f"{bpath}.config.tools[{j}]", t) for j, t in enumerate(tools)]
    for tpath, tool in entries:
        read = read_component(problems, tpath, tool, ("tool",))
        if read is None:
            continue
        provider, tconfig = read
        if provider == CODE_TOOL:
            if code_tools is None:
                problems.add(f"{tpath}.provider", "the code tool runs code for members of swarm and graph teams (import "
                                                  "the team); elsewhere an agent's code runs through a CodeExecutorAgent "
                                                  "after it in a team")
            else:
                _code_executor(problems, f"{tpath}.config.executor", tconfig.get("executor"))
                code_tools.append(tpath)
            continue
        if provider != FUNCTION_TOOL:
            problems.add(f"{tpath}.provider", f"tool provider {provider!r} is not supported; supported: {FUNCTION_TOOL} "
                                              "named like a tool of GET /api/tools/")
            continue
        name = tconfig.get("name")
        if name not in tool_names():
            # the customer's own tool: its source runs only in the sandbox (agents.component_tools has the rule)
            definition = read_function_tool(problems, tpath, tconfig)
            if definition is None:
                continue
            problems.tools.add(problems, tpath, definition)
        elif tool_component(name)["config"]["source_code"] != tconfig.get("source_code"):
            problems.ignore(f"{tpath}.config.source_code", f"{name!r} is a built-in tool: the platform's own {name} "
                                                            "runs in its place, with its own parameters (GET /api/tools/)")
        if name not in found:
            found.append(name)
    return found


AGENT_KEYS_PLATFORM = "the platform decides it for every agent"


def read_agent(problems: Problems, path: str, data, *, handoffs_allowed: set | None = None,
               code_tool: bool = False) -> dict | None:
    """An AssistantAgent (or a CodeExecutorAgent with a model client: an agent with code_execution) ->
    {name, description, system_message, model: {...}, tools, code_execution, kind}. A CodeExecutorAgent
    without a model client comes back with kind "executor" (it runs the code of the agent before it)."""
    read = read_component(problems, path, data, ("agent",))
    if read is None:
        return None
    provider, config = read
    cpath = f"{path}.config"
    if provider == CODE_EXECUTOR:
        check_keys(problems, cpath, config, {
            "name": None, "code_executor": None, "model_client": None, "description": None, "system_message": None,
            "model_client_stream": AGENT_KEYS_PLATFORM, "model_context": None,
            "sources": "the executor runs the code of the agent before it",
            "supported_languages": "the platform runs Python and shell code blocks",
        })
        _code_executor(problems, f"{cpath}.code_executor", config.get("code_executor"))
        _model_context(problems, f"{cpath}.model_context", config.get("model_context"))
        name = _text(problems, f"{cpath}.name", config.get("name"), required=True, limit=100)
        if config.get("model_client") is None:
            return {"kind": "executor", "name": name}
        return {"kind": "agent", "name": name,
                "description": _text(problems, f"{cpath}.description", config.get("description")),
                "system_message": _text(problems, f"{cpath}.system_message", config.get("system_message")),
                "model": read_model(problems, f"{cpath}.model_client", config.get("model_client")),
                "tools": [], "code_execution": True}
    if provider == USER_PROXY:
        # a person answers for it mid-run: an agent with human_input (its task waits in input_required)
        check_keys(problems, cpath, config, {
            "name": None, "description": None,
            "input_func": "a person answers in the studio or with POST /api/tasks/{id}/input/",
        })
        return {"kind": "person", "name": _text(problems, f"{cpath}.name", config.get("name"), required=True, limit=100),
                "description": _text(problems, f"{cpath}.description", config.get("description")),
                "system_message": "", "model": None, "tools": [], "code_execution": False, "human_input": True}
    if provider != ASSISTANT:
        problems.add(f"{path}.provider", f"agent provider {provider!r} is not supported; supported: "
                                         f"{ASSISTANT}, {CODE_EXECUTOR}, {USER_PROXY} (in a team)")
        return None
    check_keys(problems, cpath, config, {
        "name": None, "model_client": None, "tools": None, "workbench": None, "handoffs": None, "model_context": None,
        "memory": None, "description": None, "system_message": None, "model_client_stream": AGENT_KEYS_PLATFORM,
        "reflect_on_tool_use": AGENT_KEYS_PLATFORM, "tool_call_summary_format": AGENT_KEYS_PLATFORM,
        "max_tool_iterations": AGENT_KEYS_PLATFORM, "metadata": "not kept", "structured_message_factory": None,
        "output_content_type": None, "output_content_type_format": None,
    })
    for key in ("memory", "structured_message_factory", "output_content_type", "output_content_type_format"):
        if config.get(key):
            problems.add(f"{cpath}.{key}", "not supported by this platform")
    _model_context(problems, f"{cpath}.model_context", config.get("model_context"))
    handoffs = config.get("handoffs") or []
    if not isinstance(handoffs, list):
        problems.add(f"{cpath}.handoffs", "must be a list")
        handoffs = []
    for i, handoff in enumerate(handoffs):
        target = handoff.get("target") if isinstance(handoff, dict) else handoff
        if handoffs_allowed is None or target not in handoffs_allowed:
            where = "a swarm's members or its handoff termination targets" if handoffs_allowed is not None else \
                "only members of a swarm team hand off (import the team)"
            problems.add(f"{cpath}.handoffs[{i}]", f"handoff to {target!r} is not supported: {where}")
    code_tools = [] if code_tool else None
    return {
        "kind": "agent",
        "name": _text(problems, f"{cpath}.name", config.get("name"), required=True, limit=100),
        "description": _text(problems, f"{cpath}.description", config.get("description")),
        "system_message": _text(problems, f"{cpath}.system_message", config.get("system_message")),
        "model": read_model(problems, f"{cpath}.model_client", config.get("model_client")),
        "tools": read_tools(problems, cpath, config, code_tools),
        "code_execution": bool(code_tools),
    }


def _model_context(problems, path, data) -> None:
    if data is None:
        return
    read = read_component(problems, path, data, ("chat_completion_context",))
    if read and read[0] != UNBOUNDED_CONTEXT:
        problems.add(f"{path}.provider", f"model context {read[0]!r} is not supported; agents keep the whole "
                                         f"conversation ({UNBOUNDED_CONTEXT})")


def _code_executor(problems, path, data) -> None:
    read = read_component(problems, path, data, ("code_executor",))
    if read is None:
        return
    if read[0] not in (LOCAL_EXECUTOR, DOCKER_EXECUTOR):
        problems.add(f"{path}.provider", f"code executor {read[0]!r} is not supported; supported: {LOCAL_EXECUTOR}, "
                                         f"{DOCKER_EXECUTOR}")
        return
    problems.ignore(f"{path}", "code runs in the task's sandbox, whatever executor the document names")


def timeout_value(value) -> int:
    return max(1, math.ceil(float(value)))


# Creating what was read


def unique_name(wanted: str, taken: set) -> str:
    base = (wanted or "imported").strip()[:90] or "imported"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


class Creator:
    """Creates models and agents through the services, reusing an identical model configuration, and
    giving a name already in use a numeric suffix (listed in `renamed`)."""

    def __init__(self, *, actor, customer, request):
        self.actor, self.customer, self.request = actor, customer, request
        self.model_names = set(ModelConfig.objects.filter(customer=customer).values_list("name", flat=True))
        self.agent_names = set(Agent.objects.filter(customer=customer).values_list("name", flat=True))
        self.created = {"models": [], "agents": [], "teams": [], "tools": []}
        self.renamed: list[dict] = []
        self._models: dict[str, object] = {}

    def tools(self, problems: Problems) -> None:
        """The document's FunctionTools as the customer's tools (first: agents name them); a name the customer
        uses for another function refuses the whole import."""
        created, refused = problems.tools.create(actor=self.actor, customer=self.customer, request=self.request)
        if refused:
            first = next(iter(refused.items()))
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise ValidationFailed(f"{first[0]}: {first[1][0]}{more}", details=refused)
        self.created["tools"] += created

    def model(self, fields: dict, wanted_name: str):
        import json

        key = json.dumps(fields, sort_keys=True)
        if key in self._models:
            return self._models[key]
        for existing in ModelConfig.objects.filter(customer=self.customer, provider=fields["provider"],
                                                   model=fields["model"], base_url=fields["base_url"]):
            same = existing.model_info == fields["model_info"] and existing.responses == fields["responses"]
            try:
                same_key = fields["api_key"] is None or decrypt(existing.api_key_encrypted) == fields["api_key"]
            except ValueError:
                same_key = False
            if same and same_key:
                self._models[key] = existing
                return existing
        name = self._name(wanted_name, self.model_names, "model")
        created = model_config_create(actor=self.actor, customer=self.customer, name=name, request=self.request,
                                      key_may_follow=True, **fields)
        self.created["models"].append({"id": created.pk, "name": created.name})
        self._models[key] = created
        return created

    def agent(self, read: dict, model_config=None):
        """model_config: for a user proxy (read["model"] None), the team's model its agent row points to
        (a person answers for it: the model is never called)."""
        if model_config is None:
            model = read["model"]
            model_config = self.model(model, model["model"] or f"{read['name']}-replay")
        name = self._name(read["name"], self.agent_names, "agent")
        agent = agent_create(actor=self.actor, customer=self.customer, name=name, model=model_config,
                             description=read["description"], system_message=read["system_message"],
                             tools=read["tools"], code_execution=read["code_execution"],
                             human_input=read.get("human_input", False), request=self.request)
        self.created["agents"].append({"id": agent.pk, "name": agent.name})
        return agent

    def _name(self, wanted: str, taken: set, kind: str) -> str:
        name = unique_name(wanted, taken)
        if name != (wanted or "").strip()[:90]:
            self.renamed.append({"kind": kind, "wanted": wanted, "name": name})
        return name

    def result(self, problems: Problems) -> dict:
        return {**self.created, "renamed": self.renamed, "ignored": problems.ignored}


def import_document(data) -> tuple[str, list]:
    """The component(s) of a request body: {component}, a gallery file {components: {...}}, or a bare
    component. Returns (kind, [(path, component)]) with kind "gallery" or "component"."""
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be an object {component} or an AutoGen Studio gallery file",
                               details={"component": ["Required"]})
    if "component" in data:
        unknown = sorted(set(data) - {"component"})
        if unknown:
            raise ValidationFailed(details={k: ["Unknown key; allowed: component"] for k in unknown})
        return "component", [("component", data["component"])]
    if isinstance(data.get("components"), dict):
        return "gallery", [("components", data["components"])]
    if "provider" in data:
        return "component", [("component", data)]
    details = {"component": ["Required: an AgentChat component (dump_component JSON)"]}
    details.update({key: ["Unknown key; allowed: component (or a gallery file's components)"] for key in sorted(data)})
    raise ValidationFailed("The body must be an object {component} or an AutoGen Studio gallery file",
                           details=details)


GALLERY_SECTIONS = ("teams", "agents", "models", "tools", "terminations", "workbenches")


def gallery_rest(problems: Problems, path: str, gallery: dict, taken: str) -> None:
    """A gallery's other sections, listed in `ignored` (never dropped silently): an import takes one section,
    with what its components contain."""
    where = {"teams": "POST /api/teams/import/", "agents": "POST /api/agents/import/"}
    for section in GALLERY_SECTIONS:
        items = gallery.get(section)
        if section == taken or not items:
            continue
        if section in where:
            reason = f"not imported here: import the gallery's {section} with {where[section]}"
        else:
            reason = (f"not imported on their own: the {taken} bring what they use (models as model "
                      "configurations, FunctionTools as your tools)")
        problems.ignore(f"{path}.{section}", reason)
    for key in sorted(set(gallery) - set(GALLERY_SECTIONS)):
        problems.ignore(f"{path}.{key}", f"not imported: a gallery section this platform does not know "
                                         f"(known: {', '.join(GALLERY_SECTIONS)})")


def agents_import(*, actor, customer, data, request=None) -> dict:
    """POST /api/agents/import/: one agent component, or every agent of a gallery file, in one transaction."""
    from django.db import transaction

    kind, documents = import_document(data)
    problems = Problems()
    reads = []
    for path, document in documents:
        if kind == "gallery":
            agents = document.get("agents")
            gallery_rest(problems, path, document, "agents")
            if not isinstance(agents, list) or not agents:
                problems.add(f"{path}.agents", "the gallery has no agents to import")
                continue
            items = [(f"{path}.agents[{i}]", a) for i, a in enumerate(agents)]
        else:
            items = [(path, document)]
        for item_path, item in items:
            if isinstance(item, dict) and item.get("component_type") == "team":
                problems.add(f"{item_path}.component_type", "a team: import it with POST /api/teams/import/")
                continue
            read = read_agent(problems, item_path, item)
            if read is not None and read["kind"] == "person":
                problems.add(f"{item_path}.provider", "a UserProxyAgent stands for a person in a team: import the "
                                                      "team (POST /api/teams/import/), or give an agent "
                                                      "human_input: true")
            elif read is not None and read["kind"] == "executor":
                problems.add(f"{item_path}.config.model_client", "a CodeExecutorAgent needs a model client to be an "
                                                                 "agent here (or import the team it belongs to)")
            elif read is not None:
                reads.append(read)
    problems.raise_if_any()
    with transaction.atomic():
        creator = Creator(actor=actor, customer=customer, request=request)
        creator.tools(problems)
        for read in reads:
            creator.agent(read)
        audit_record(actor=actor, action="agent.import", target=f"customer:{customer.pk}", customer=customer,
                     request=request, details={"agents": [a["id"] for a in creator.created["agents"]]})
    return creator.result(problems)
