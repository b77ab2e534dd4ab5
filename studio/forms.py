"""The studio's forms: they shape what people type into the arguments of the existing services (agents,
teams, tasks), which keep every rule; a service's error is put back on the form, on the field it names."""
from django import forms
from django.contrib.auth.forms import AuthenticationForm

from agents.models import ModelConfig
from runtime.tools import tool_catalog
from tasks.models import Task
from teams.models import Team

RESPONSE_SEPARATOR = "\n---\n"


def apply_service_error(form, exc) -> None:
    """An ApplicationError from a service -> errors on the form (fields it names, the rest at the top)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    placed = False
    for key, messages in details.items():
        if not isinstance(messages, list):
            messages = [str(messages)]
        messages = [m if isinstance(m, str) else str(m) for m in messages]
        for message in messages:
            target, message = (form.place_service_error(key, message) if hasattr(form, "place_service_error")
                               else (key, message))
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


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)
    mode = forms.ChoiceField(choices=Team.Mode.choices, help_text=(
        "Round robin: the members speak in order. Selector: a model (below) picks the next speaker. Swarm: the "
        "speaker hands off to another member. Graph and Magentic One: set them up through the API."))
    selector_model = forms.TypedChoiceField(coerce=int, required=False, empty_value=None,
                                            label="Selector model (selector mode)")
    max_messages = forms.IntegerField(required=False, min_value=1, label="Stop after this many messages")
    text_mention = forms.CharField(required=False, max_length=200, label="Stop when a message contains",
                                   help_text="e.g. TERMINATE")
    timeout_seconds = forms.IntegerField(required=False, min_value=1, label="Stop after (seconds)")
    max_tokens = forms.IntegerField(required=False, min_value=1, label="Stop after (tokens)")

    TERMINATION = ("max_messages", "text_mention", "timeout_seconds", "max_tokens")

    def __init__(self, *args, agents=(), models=(), slots=None, **kwargs):
        super().__init__(*args, **kwargs)
        agent_choices = [("", "(nobody)")] + _choices(agents)
        self.member_fields = []
        for i in range(slots or max(2, min(len(agent_choices) - 1, 8))):
            name = f"member_{i + 1}"
            self.fields[name] = forms.TypedChoiceField(
                coerce=int, required=False, empty_value=None, choices=agent_choices,
                label=f"Speaker {i + 1}")
            self.member_fields.append(name)
        self.fields["selector_model"].choices = [("", "(none)")] + _choices(models)

    @classmethod
    def initial_for(cls, team) -> dict:
        members = team.member_ids()
        data = {"name": team.name, "mode": team.mode, "selector_model": team.selector_model_id,
                **{k: (team.termination or {}).get(k) for k in cls.TERMINATION}}
        data.update({f"member_{i + 1}": agent_id for i, agent_id in enumerate(members)})
        return data

    def members(self):
        return [self[name] for name in self.member_fields]

    def service_data(self) -> dict:
        d = self.cleaned_data
        termination = {k: d[k] for k in self.TERMINATION if d[k] not in (None, "")}
        return {"name": d["name"], "mode": d["mode"], "selector_model": d["selector_model"],
                "members": [d[n] for n in self.member_fields if d[n] is not None], "termination": termination}


class RunForm(forms.Form):
    target = forms.ChoiceField(label="Agent or team")
    input = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Task")

    def __init__(self, *args, agents=(), teams=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [
            ("Agents", [(f"agent:{a.pk}", a.name + (" (stopped)" if a.status == "stopped" else "")) for a in agents]),
            ("Teams", [(f"team:{t.pk}", t.name) for t in teams]),
        ]


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
