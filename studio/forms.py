"""The studio's forms: they shape what people type into the arguments of the existing services (agents,
teams, tasks), which keep every rule; a service's error is put back on the form, on the field it names."""
import json
import re

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from agents.models import ModelConfig
from runtime.tools import tool_catalog
from tasks.models import Task
from teams import conditions
from teams.models import Team

RESPONSE_SEPARATOR = "\n---\n"


def apply_service_error(form, exc) -> None:
    """An ApplicationError from a service -> errors on the form (fields it names, the rest at the top)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    placed = False
    for key, messages in details.items():
        if isinstance(messages, dict):  # e.g. a quota's {"timeout_seconds": {"requested": .., "quota": ..}}
            messages = [f"{k}: " + (", ".join(f"{a} {b}" for a, b in v.items()) if isinstance(v, dict) else str(v))
                        for k, v in messages.items()]
        elif not isinstance(messages, list):
            messages = [str(messages)]
        messages = [m if isinstance(m, str) else str(m) for m in messages]
        for message in messages:
            target, message = (form.place_service_error(key, message) if hasattr(form, "place_service_error")
                               else (key, message))
            if target == "__section__":  # the form shows it beside the fields it is about
                placed = True
                continue
            target = target if target in form.fields else None
            form.add_error(target, message if target else f"{key}: {message}")
            placed = True
    if not placed or exc.code not in ("validation_error",):
        form.add_error(None, exc.message)


class StudioLoginForm(AuthenticationForm):
    """Django's sign-in form (authenticate(): the lockout and the audit rows apply); customers' users only."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if getattr(user, "membership", None) is None:
            raise forms.ValidationError(
                "This account does not belong to a customer: platform admins use the Django admin.",
                code="no_customer")


class ModelConfigForm(forms.Form):
    name = forms.CharField(max_length=100)
    provider = forms.ChoiceField(choices=[(ModelConfig.Provider.OPENAI, "OpenAI-compatible endpoint"),
                                          (ModelConfig.Provider.REPLAY, "Replay (scripted answers)")], help_text=(
        "openai: any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp server). "
        "replay: scripted answers, no network (demos and tests)."))
    model = forms.CharField(max_length=200, required=False, help_text="The model name the endpoint serves (openai).")
    base_url = forms.CharField(max_length=500, required=False, label="Base URL",
                               help_text="e.g. http://127.0.0.1:11434/v1; empty: OpenAI itself.")
    api_key = forms.CharField(max_length=2000, required=False, label="API key",
                              widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))
    remove_api_key = forms.BooleanField(required=False, label="Remove the stored API key")
    family = forms.CharField(max_length=100, required=False, label="Model family", help_text=(
        "Model capabilities, needed for models AutoGen does not know: leave the family empty to send none. "
        "e.g. llama3.1, gpt-4o, unknown."))
    vision = forms.BooleanField(required=False)
    function_calling = forms.BooleanField(required=False, label="Function calling (tools)")
    json_output = forms.BooleanField(required=False, label="JSON output")
    structured_output = forms.BooleanField(required=False, label="Structured output")
    responses = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}), label="Replay responses",
                                help_text="replay: the scripted answers in order, separated by a line with ---.")
    price_prompt_per_million = forms.DecimalField(required=False, min_value=0, max_digits=12, decimal_places=4,
                                                  label="Price per million prompt tokens")
    price_completion_per_million = forms.DecimalField(required=False, min_value=0, max_digits=12, decimal_places=4,
                                                      label="Price per million completion tokens")

    MODEL_INFO_FLAGS = ("vision", "function_calling", "json_output", "structured_output")

    def place_service_error(self, key: str, message: str) -> tuple[str, str]:
        """The service names the API's model_info: on this form that is the family and its boxes."""
        if key == "model_info" and "does not know" in message:
            model = self.cleaned_data.get("model") or "this model"
            return "family", (f"AutoGen does not know {model!r}: give its family (unknown will do) and tick what "
                              "it can do below (Function calling for agents with tools).")
        return ("family" if key == "model_info" else key), message

    @classmethod
    def initial_for(cls, model: ModelConfig) -> dict:
        info = model.model_info or {}
        return {
            "name": model.name, "provider": model.provider, "model": model.model, "base_url": model.base_url,
            "family": info.get("family", ""), **{k: bool(info.get(k)) for k in cls.MODEL_INFO_FLAGS},
            "responses": RESPONSE_SEPARATOR.join(model.responses or []),
            "price_prompt_per_million": model.price_prompt_per_million,
            "price_completion_per_million": model.price_completion_per_million,
        }

    def service_data(self, *, editing: bool) -> dict:
        d = self.cleaned_data
        family = d["family"].strip()
        model_info = {"family": family, **{k: d[k] for k in self.MODEL_INFO_FLAGS}} if family else {}
        responses = [r.strip("\n") for r in d["responses"].replace("\r\n", "\n").split(RESPONSE_SEPARATOR)]
        data = {
            "name": d["name"], "provider": d["provider"], "model": d["model"], "base_url": d["base_url"],
            "model_info": model_info, "responses": [r for r in responses if r.strip()],
            "price_prompt_per_million": d["price_prompt_per_million"],
            "price_completion_per_million": d["price_completion_per_million"],
        }
        if d["remove_api_key"]:
            data["api_key"] = ""
        elif d["api_key"]:
            data["api_key"] = d["api_key"]
        elif not editing:
            data["api_key"] = None
        return data


def _choices(queryset):
    return [(obj.pk, str(obj.name)) for obj in queryset]


class AgentForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    system_message = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 5}))
    model = forms.TypedChoiceField(coerce=int, label="Model configuration")
    tools = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    code_execution = forms.BooleanField(required=False, label="Runs the code its model writes (Python, shell) in its sandbox")
    human_input = forms.BooleanField(required=False, label="A person answers for this agent", help_text=(
        "In a team it is the person's seat: its turn makes the run wait for your answer on the run page. Alone, "
        "you are asked after each of its replies. It calls no tools."))
    approval = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                         label="Ask a person before it calls")
    memory_mb = forms.IntegerField(required=False, min_value=1, label="Memory (MB)")
    cpu_seconds = forms.IntegerField(required=False, min_value=1, label="CPU seconds")
    timeout_seconds = forms.IntegerField(required=False, min_value=1, label="Timeout (seconds)")
    max_tokens = forms.IntegerField(required=False, min_value=1, label="Token budget per run")

    LIMITS = ("memory_mb", "cpu_seconds", "timeout_seconds", "max_tokens")

    def __init__(self, *args, models=(), custom_tools=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = _choices(models)
        # the built-in tools, then the customer's own (agents.tools; they run in the task's sandbox)
        self.fields["tools"].choices = [(t["name"], f"{t['name']}: {t['description']}") for t in tool_catalog()] + [
            (t.name, f"{t.name}: {t.description or 'your tool'}") for t in custom_tools]
        self.fields["approval"].choices = [(name, f"{name} calls") for name, _ in self.fields["tools"].choices] + [
            ("code_execution", "code_execution (running its code)")]
        for name in self.LIMITS:
            self.fields[name].help_text = "empty: the platform default"

    @classmethod
    def initial_for(cls, agent) -> dict:
        return {"name": agent.name, "description": agent.description, "system_message": agent.system_message,
                "model": agent.model_id, "tools": list(agent.tools), "code_execution": agent.code_execution,
                "human_input": agent.human_input, "approval": list(agent.approval or []),
                **{k: (agent.limits or {}).get(k) for k in cls.LIMITS}}

    def service_data(self) -> dict:
        d = self.cleaned_data
        return {"name": d["name"], "description": d["description"], "system_message": d["system_message"],
                "model": d["model"], "tools": list(d["tools"]), "code_execution": d["code_execution"],
                "human_input": d["human_input"], "approval": list(d["approval"]),
                "limits": {k: d[k] for k in self.LIMITS if d[k] is not None}}


# Conditions with a field of their own on the team form (every one AgentChat's flat conditions have); a
# combination (any/all, nested) is written as JSON. A stored termination the fields cannot give back exactly
# is shown whole as JSON, so that saving the form never changes it.
TERMINATION_FIELDS = ("max_messages", "text_mention", "timeout_seconds", "max_tokens", "handoff", "source_match",
                      "stop_message", "function_call")
EDGE_ACTIVATIONS = [("", "all (default)"), ("all", "all"), ("any", "any")]
SPARE_EDGE_ROWS = 3


def _slots(data, prefix: str, suffix: str = "") -> int:
    """How many numbered rows (prefix1suffix, prefix2suffix, ...) a posted form has."""
    numbers = [int(m.group(1)) for key in (data or {})
               for m in [re.fullmatch(rf"{re.escape(prefix)}(\d+){re.escape(suffix)}", key)] if m]
    return max(numbers, default=0)


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)
    mode = forms.ChoiceField(choices=Team.Mode.choices, help_text=(
        "Round robin: the members speak in order. Selector: a model picks the next speaker. Swarm: the speaker "
        "hands off to another member. Graph: the edges below say who speaks after whom, starting with speaker 1. "
        "Magentic One: an orchestrator model plans and picks the speaker."))
    selector_model = forms.TypedChoiceField(coerce=int, required=False, empty_value=None,
                                            label="Selector model (selector mode)")
    orchestrator_model = forms.TypedChoiceField(coerce=int, required=False, empty_value=None,
                                                label="Orchestrator model (Magentic One mode)")
    max_messages = forms.IntegerField(required=False, min_value=1, label="Stop after this many messages")
    text_mention = forms.CharField(required=False, strip=False, label="Stop when a message contains",
                                   help_text="e.g. TERMINATE")
    timeout_seconds = forms.IntegerField(required=False, min_value=1, label="Stop after (seconds)")
    max_tokens = forms.IntegerField(required=False, min_value=1, label="Stop after (tokens)")
    handoff = forms.CharField(required=False, strip=False, label="Stop on a handoff to",
                              help_text="a member's name, or another target such as user (swarm)")
    source_match = forms.CharField(required=False, strip=False, label="Stop after one of these speaks",
                                   help_text="members' names, separated by commas")
    function_call = forms.CharField(required=False, strip=False, label="Stop once this tool ran",
                                    help_text="a tool's name, e.g. calculator")
    stop_message = forms.BooleanField(required=False, label="Stop when an agent sends a stop message")
    termination_json = forms.CharField(
        required=False, label="Combination (JSON)", widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text=('Instead of the fields above, for conditions that must hold together or nest: '
                   '{"all": [{"source_match": ["critic"]}, {"text_mention": "APPROVED"}]} or {"any": [...]}, '
                   "items being conditions as above (max_messages, text_mention, timeout_seconds, max_tokens, "
                   "handoff, source_match, stop_message, function_call) or combinations."))

    def __init__(self, *args, agents=(), models=(), slots=None, stored_graph=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored_graph = stored_graph or {}
        data = self.data if self.is_bound else self.initial
        agent_choices = [("", "(nobody)")] + _choices(agents)
        self.agent_names = dict(_choices(agents))
        self.member_fields = []
        # as many speaker slots as stored (or posted) members, one spare while agents are left, at least 2
        stored_members, agent_count = _slots(data, "member_"), len(agent_choices) - 1
        default_slots = max(2, min(agent_count, 8), stored_members if self.is_bound
                            else min(stored_members + 1, agent_count))
        for i in range(slots or default_slots):
            name = f"member_{i + 1}"
            self.fields[name] = forms.TypedChoiceField(
                coerce=int, required=False, empty_value=None, choices=agent_choices,
                label=f"Speaker {i + 1}")
            self.member_fields.append(name)
        self.fields["selector_model"].choices = [("", "(none)")] + _choices(models)
        self.fields["orchestrator_model"].choices = [("", "(none)")] + _choices(models)
        # Graph edges: a fixed number of rows (what is stored, and a few spare ones).
        self.edge_fields = []
        stored_rows = _slots(data, "edge_", "_source")
        for i in range(max(SPARE_EDGE_ROWS, stored_rows) if self.is_bound else stored_rows + SPARE_EDGE_ROWS):
            n = i + 1
            row = {
                "source": forms.TypedChoiceField(coerce=int, required=False, empty_value=None, choices=agent_choices,
                                                 label=f"Edge {n}: from"),
                "target": forms.TypedChoiceField(coerce=int, required=False, empty_value=None, choices=agent_choices,
                                                 label=f"Edge {n}: to"),
                "condition": forms.CharField(required=False, strip=False,
                                             label=f"Edge {n}: when the message contains"),
                "activation": forms.ChoiceField(required=False, choices=EDGE_ACTIVATIONS,
                                                label=f"Edge {n}: activation"),
                "activation_group": forms.CharField(required=False, strip=False,
                                                    label=f"Edge {n}: activation group"),
            }
            for key, field in row.items():
                self.fields[f"edge_{n}_{key}"] = field
            self.edge_fields.append(n)
        self._edge_rows_sent = []
        self.graph_errors = []
        shown = str(data.get("termination_json") or "")
        if shown.count("\n") > 3:  # a stored combination is shown whole
            self.fields["termination_json"].widget.attrs["rows"] = min(shown.count("\n") + 1, 24)

    # -- initial values from a stored team ----------------------------------------------------------------

    @classmethod
    def initial_for(cls, team) -> dict:
        members = team.member_ids()
        data = {"name": team.name, "mode": team.mode, "selector_model": team.selector_model_id,
                "orchestrator_model": team.orchestrator_model_id, **cls.termination_initial(team.termination or {})}
        data.update({f"member_{i + 1}": agent_id for i, agent_id in enumerate(members)})
        for i, edge in enumerate((team.graph or {}).get("edges", [])):
            data.update({f"edge_{i + 1}_{key}": edge.get(key) for key in conditions.EDGE_KEYS})
        return data

    @classmethod
    def termination_initial(cls, termination: dict) -> dict:
        """The fields that give this termination back exactly, or the whole of it as JSON."""
        if not termination:
            return {}
        fields = {k: termination.get(k) for k in TERMINATION_FIELDS}
        if isinstance(fields["source_match"], list):
            fields["source_match"] = ", ".join(fields["source_match"])
        # (a text input cannot hold a line break: browsers drop them)
        one_line = not any(isinstance(v, str) and ("\n" in v or "\r" in v) for v in fields.values())
        if one_line and cls._termination_from(fields) == termination:
            return fields
        return {"termination_json": json.dumps(termination, indent=2, ensure_ascii=False)}

    @staticmethod
    def _termination_from(values: dict) -> dict:
        termination = {}
        for key in TERMINATION_FIELDS:
            value = values.get(key)
            if value in (None, "", False):
                continue
            if key == "source_match":
                value = [name.strip() for name in value.split(",") if name.strip()]
            termination[key] = value
        return termination

    # -- what the form sends to the service -----------------------------------------------------------------

    def members(self):
        return [self[name] for name in self.member_fields]

    def edges(self):
        return [{"n": n, "fields": [self[f"edge_{n}_{key}"] for key in conditions.EDGE_KEYS]} for n in self.edge_fields]

    def clean_termination_json(self):
        text = self.cleaned_data["termination_json"].strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError('Must be a JSON object, e.g. {"any": [...]}')
        return value

    def clean(self):
        d = super().clean()
        fields = self._termination_from(d)
        if fields and d.get("termination_json"):
            self.add_error("termination_json", "Give the conditions either in the fields above or here, not both: "
                                               "put the fields' conditions inside this combination.")
        return d

    def _graph(self) -> dict:
        d = self.cleaned_data
        edges, self._edge_rows_sent = [], []
        for n in self.edge_fields:
            row = {key: d.get(f"edge_{n}_{key}") for key in conditions.EDGE_KEYS}
            if all(v in (None, "") for v in row.values()):
                continue
            edges.append({k: v for k, v in row.items() if v not in (None, "") or k in ("source", "target")})
            self._edge_rows_sent.append(n)
        # Unchanged rows keep the stored edges exactly: rows leave out empty keys (the API may have stored explicit
        # nulls) and a text input drops line breaks.
        stored = self.stored_graph.get("edges") or []
        if [{k: re.sub(r"[\r\n]", "", v) if isinstance(v, str) else v for k, v in e.items() if v is not None}
                for e in stored] == edges:
            return {"edges": [dict(e) for e in stored]}
        return {"edges": edges}

    def service_data(self) -> dict:
        d = self.cleaned_data
        mode = d["mode"]
        termination = d["termination_json"] or self._termination_from(d)
        data = {"name": d["name"], "mode": mode,
                # a mode's model goes with its mode: switching mode clears the other (the API does the same)
                "selector_model": d["selector_model"] if mode == Team.Mode.SELECTOR else None,
                "orchestrator_model": d["orchestrator_model"] if mode == Team.Mode.MAGENTIC_ONE else None,
                "members": [d[n] for n in self.member_fields if d[n] is not None], "termination": termination}
        if mode == Team.Mode.GRAPH:
            data["graph"] = self._graph()
        return data

    # -- a service's error on the field it is about ---------------------------------------------------------

    def _named(self, message: str) -> str:
        """Agent ids in the service's messages, as the names people gave them."""
        name = (lambda m: self.agent_names.get(int(m.group(1)), m.group(1)))
        message = re.sub(r"\bagent (\d+)", lambda m: f"agent {name(m)}", message)
        if "the cycle " in message:  # "edges: the cycle 3 -> 4 -> 3 has no ..."
            message = re.sub(r"(?<![\w])(\d+)(?= ->| has)", name, message)
        return message

    def place_service_error(self, key: str, message: str) -> tuple[str, str]:
        if key == "termination":
            path, _, text = message.partition(": ")
            first = re.split(r"[.\[]", path, maxsplit=1)[0]
            if first in TERMINATION_FIELDS and not self.cleaned_data.get("termination_json"):
                return first, text
            return "termination_json", message
        if key == "graph":
            message = self._named(message)
            m = re.match(r"edges\[(\d+)\](?:\.(\w+))?: (.*)", message)
            if m and int(m.group(1)) < len(self._edge_rows_sent):
                n = self._edge_rows_sent[int(m.group(1))]
                field = m.group(2) if m.group(2) in conditions.EDGE_KEYS else "source"
                return f"edge_{n}_{field}", m.group(3)
            message = message.removeprefix("edges: ")
            self.graph_errors.append(message[:1].upper() + message[1:])
            return "__section__", message
        if key == "members":
            return key, self._named(message)
        return key, message


class RunForm(forms.Form):
    target = forms.ChoiceField(label="Agent or team")
    input = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Task")
    each_line = forms.BooleanField(
        required=False, label="One run per line",
        help_text=f"Each line that is not empty starts a run of its own, all at once (at most {settings.MAX_TASK_BATCH}).")

    def __init__(self, *args, agents=(), teams=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [
            ("Agents", [(f"agent:{a.pk}", a.name + (" (stopped)" if a.status == "stopped" else "")) for a in agents]),
            ("Teams", [(f"team:{t.pk}", t.name) for t in teams]),
        ]

    def clean(self):
        data = super().clean()
        if data.get("each_line") and data.get("input"):
            # numbered as the box shows them (blank lines count), from the text as typed: the field strips its ends
            numbered = [(n, line.strip()) for n, line in enumerate(self.data.get("input", "").splitlines(), 1)
                        if line.strip()]
            data["lines"], data["line_numbers"] = [line for _, line in numbered], [n for n, _ in numbered]
            if len(data["lines"]) > settings.MAX_TASK_BATCH:
                self.add_error("input", f"At most {settings.MAX_TASK_BATCH} lines (one run each); "
                                        f"this has {len(data['lines'])}.")
        return data


class ContinueForm(forms.Form):
    input = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Your next message")


class RunFilterForm(forms.Form):
    status = forms.ChoiceField(required=False)
    agent = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    team = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, agents=(), teams=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "any")] + [(s, s) for s in Task.Status.values]
        self.fields["agent"].choices = [("", "any")] + _choices(agents)
        self.fields["team"].choices = [("", "any")] + _choices(teams)
