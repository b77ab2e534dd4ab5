"""Declarative specs of a customer's model configurations, agents, teams, webhooks and schedules.

Owns: reading a spec (YAML or JSON), validating its shape with errors that name the path
(`agents[1].model: unknown model 'x'`), the plan (create / update with the changed fields /
unchanged / delete with prune) against what the customer has, carrying the plan out through the
services in one transaction (a failing spec changes nothing), and the export that applies back as
`no changes`. Objects are matched by name; references (an agent's model, a team's members and
selector model) are names. Provider keys never stand in a spec: `api_key_env` names an environment
variable of the applying side.

    reader.py         spec_load (YAML/JSON text), spec_customer, spec_read (the shape, errors by path)
    plan.py           PlanItem, SpecResult, the plan against what exists (spec_plan), references by name
    apply.py          spec_apply: the plan carried out through the services in one transaction (or a dry run)
    export.py         spec_export and spec_dump_yaml (applies back as `no changes`)
    integrations.py   the webhooks and schedules sections
    views.py          POST /api/apply/, GET /api/export/ (routed in autogen_platform/urls.py)
    management/       `manage.py apply -f FILE [--dry-run] [--prune]`, `manage.py export --customer NAME`
This app sits above agents, teams and integrations (it uses their services and models; none imports it).
"""
