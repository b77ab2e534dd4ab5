"""The platform's tool registry, as the API sees it (the functions live in agentchild, which the sandbox runs)."""
from .agentchild.tools import TOOLS, tool_catalog, tool_names

__all__ = ["TOOLS", "tool_catalog", "tool_names"]
