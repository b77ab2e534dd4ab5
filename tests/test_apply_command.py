"""`manage.py apply -f FILE [--dry-run] [--prune]` and `manage.py export` as an operator runs them."""
import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from accounts.crypto import decrypt
from agents.models import Agent, ModelConfig
from teams.models import Team
from tests.api_support import make_agent, make_model
from tests.live_server import server_env

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")

SPEC = """
customer: acme
models:
  - name: local-llm
    provider: openai
    model: llama3.1
    base_url: http://127.0.0.1:11434/v1
    api_key_env: SPECS_TEST_LLM_KEY
    model_info: {vision: false, function_calling: true, json_output: false, family: unknown}
  - name: demo
    provider: replay
    responses: ["Hello. TERMINATE"]
agents:
  - name: writer
    model: local-llm
    system_message: You write short, clear answers.
    tools: [calculator]
  - name: critic
    model: demo
teams:
  - name: duo
    members: [writer, critic]
    termination: {max_messages: 6, text_mention: TERMINATE}
"""


@pytest.fixture
def acme(make_customer, monkeypatch):
    monkeypatch.setenv("SPECS_TEST_LLM_KEY", "sk-cli-123")
    return make_customer("acme")


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command("apply", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().splitlines()


@pytest.mark.django_db
def test_apply_prints_the_plan_then_no_changes_the_second_time(acme, tmp_path):
    customer, _ = acme
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)

    first = run("-f", str(spec))
    second = run("-f", str(spec))

    assert first == ["create model local-llm", "create model demo", "create agent writer", "create agent critic",
                     "create team duo", "5 to create, 0 to update, 0 unchanged, 0 to delete"]
    assert second[-1] == "no changes" and second[0] == "unchanged model local-llm"
    model = ModelConfig.objects.get(customer=customer, name="local-llm")
    assert decrypt(model.api_key_encrypted) == "sk-cli-123" and "sk-cli-123" not in model.api_key_encrypted


@pytest.mark.django_db
def test_dry_run_and_update_lines(acme, tmp_path):
    customer, _ = acme
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    run("-f", str(spec))
    spec.write_text(SPEC.replace("You write short, clear answers.", "Haikus only.").replace("[calculator]", "[]"))

    dry = run("-f", str(spec), "--dry-run")

    assert "update agent writer (system_message, tools)" in dry
    assert dry[-2:] == ["0 to create, 1 to update, 4 unchanged, 0 to delete", "dry run: nothing was written"]
    writer = Agent.objects.get(customer=customer, name="writer")
    assert writer.system_message == "You write short, clear answers." and writer.version == 1

    assert run("-f", str(spec))[-1] == "0 to create, 1 to update, 4 unchanged, 0 to delete"
    writer.refresh_from_db()
    assert writer.system_message == "Haikus only." and writer.tools == [] and writer.version == 2


@pytest.mark.django_db
def test_prune_from_the_command_line(acme, tmp_path):
    customer, _ = acme
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    make_agent(customer, name="old", model=make_model(customer, name="old-model"))

    lines = run("-f", str(spec), "--prune")

    assert lines[-3:] == ["delete agent old", "delete model old-model",
                          "5 to create, 0 to update, 0 unchanged, 2 to delete"]
    assert not Agent.objects.filter(customer=customer, name="old").exists()


@pytest.mark.django_db
def test_errors_name_the_path_and_change_nothing(acme, tmp_path):
    customer, _ = acme
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("model: demo", "model: x").replace("[writer, critic]", "[writer, ghost]"))

    with pytest.raises(CommandError) as error:
        run("-f", str(spec))

    assert str(error.value).splitlines() == ["agents[1].model: unknown model 'x' (and 1 more problem)",
                                             "  agents[1].model: unknown model 'x'",
                                             "  teams[0].members[1]: unknown agent 'ghost'"]
    assert not ModelConfig.objects.filter(customer=customer).exists()

    spec.write_text(SPEC.replace("customer: acme", ""))
    with pytest.raises(CommandError, match="customer: the spec must name its customer"):
        run("-f", str(spec))
    spec.write_text(SPEC.replace("customer: acme", "customer: nobody"))
    with pytest.raises(CommandError, match="unknown customer 'nobody'"):
        run("-f", str(spec))
    with pytest.raises(CommandError, match="cannot read"):
        run("-f", str(tmp_path / "missing.yaml"))


@pytest.mark.django_db
def test_export_then_apply_is_no_changes(acme, tmp_path, monkeypatch):
    customer, _ = acme
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    run("-f", str(spec))
    exported = tmp_path / "export.yaml"

    call_command("export", "--customer", "acme", "-o", str(exported), stderr=io.StringIO())

    text = exported.read_text()
    assert "sk-cli-123" not in text
    assert "api_key_env: LOCAL_LLM_API_KEY  # the key is not exported" in text
    # Without the variable the apply refuses, naming it; with it, nothing changes.
    with pytest.raises(CommandError, match=r"models\[1\].api_key_env: environment variable LOCAL_LLM_API_KEY"):
        run("-f", str(exported))
    monkeypatch.setenv("LOCAL_LLM_API_KEY", "sk-cli-123")
    assert run("-f", str(exported), "--prune")[-1] == "no changes"
    assert Team.objects.get(customer=customer, name="duo").termination == {"max_messages": 6,
                                                                          "text_mention": "TERMINATE"}
    out = io.StringIO()
    call_command("export", "--customer", "acme", stdout=out)
    assert out.getvalue() == text
    with pytest.raises(CommandError, match="unknown customer"):
        call_command("export", "--customer", "nobody")


@pytest.mark.django_db(transaction=True)
def test_manage_py_apply_reads_stdin_and_exits_non_zero_on_errors(acme):
    env = server_env(SPECS_TEST_LLM_KEY="sk-cli-123")

    def manage(*args, stdin):
        return subprocess.run([sys.executable, MANAGE, "apply", *args], input=stdin, env=env, capture_output=True,
                              text=True, timeout=60, cwd=settings.BASE_DIR)

    bad = manage("-f", "-", stdin=SPEC.replace("api_key_env: SPECS_TEST_LLM_KEY", "api_key: sk-in-the-file"))
    good = manage("-f", "-", stdin=SPEC)

    assert bad.returncode != 0
    assert "models[0].api_key: keys never stand in a spec" in bad.stderr
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[-1] == "5 to create, 0 to update, 0 unchanged, 0 to delete"
    assert Agent.objects.filter(customer=acme[0]).count() == 2
