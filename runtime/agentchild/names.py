"""AgentChat names of a task's agents (stdlib only: the platform's component export uses the same names)."""
import re


def agent_identifier(name: str, taken: set) -> str:
    """AgentChat names must be identifiers and unique; platform names may hold dashes or spaces."""
    ident = re.sub(r"\W", "_", name).strip("_") or "agent"
    if ident[0].isdigit():
        ident = f"agent_{ident}"
    if ident == "user":
        ident = "user_agent"
    base, n = ident, 2
    while ident in taken:
        ident, n = f"{base}_{n}", n + 1
    taken.add(ident)
    return ident
