"""AutoGen FunctionTool components imported as customers' own tools (agents.tools), read as data.

A FunctionTool's config holds Python source (`source_code`, `global_imports`); AgentChat's loader
`exec`s it. Here the source is only parsed with `ast` (never compiled or run in the platform): the
tool's JSON Schema parameters come from the function's signature, the way FunctionTool derives them
from its type hints, and the source then runs only inside a task's sandbox, like every customer tool.

Names, the documented rule (docs/api.md, "AutoGen components"):
- a FunctionTool named like a built-in tool: the platform's tool runs (its source is listed in `ignored`);
- named like one of the customer's tools: the same function (same statements, layout and comments aside,
  and the same description) uses that tool; a different one is refused, naming its path: the platform
  never replaces or renames a tool its agents may use;
- two FunctionTools of one document with one name: the same function is one tool, different ones are refused.
"""
import ast
import re

from .models import Tool
from .tools import parameters_problems, source_problems, tool_create

MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SIMPLE = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
          "bool": {"type": "boolean"}, "list": {"type": "array"}, "List": {"type": "array"},
          "tuple": {"type": "array"}, "Tuple": {"type": "array"}, "Sequence": {"type": "array"},
          "dict": {"type": "object"}, "Dict": {"type": "object"}, "Mapping": {"type": "object"},
          "Any": {}, "None": {"type": "null"}, "object": {}}
TYPES_HELP = "str, int, float, bool, list[...], dict[...], Optional[...], Union[...], Literal[...], Annotated[..., 'text'], Any"


class NotReadable(Exception):
    """An annotation that has no JSON Schema here (a class of the customer's, an expression...)."""


def _name(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # typing.List, t.Optional
        return node.attr
    return None


def annotation_schema(node) -> dict:
    """A type annotation (ast) -> JSON Schema, as FunctionTool's pydantic model would describe it."""
    if node is None:
        return {}
    if isinstance(node, ast.Constant):
        if node.value is None:
            return {"type": "null"}
        if isinstance(node.value, str):  # a string annotation: parse what it says
            try:
                return annotation_schema(ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                raise NotReadable(repr(node.value)) from None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | Y
        return _union([node.left, node.right])
    name = _name(node)
    if name in SIMPLE:
        return dict(SIMPLE[name])
    if isinstance(node, ast.Subscript):
        outer = _name(node.value)
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer in ("list", "List", "Sequence", "set", "Set") and len(args) == 1:
            return {"type": "array", "items": annotation_schema(args[0])}
        if outer in ("tuple", "Tuple"):
            return {"type": "array"}
        if outer in ("dict", "Dict", "Mapping") and len(args) == 2:
            return {"type": "object", "additionalProperties": annotation_schema(args[1])}
        if outer == "Optional" and len(args) == 1:
            return _union([args[0], ast.Constant(None)])
        if outer == "Union":
            return _union(args)
        if outer == "Literal" and all(isinstance(a, ast.Constant) for a in args):
            return {"enum": [a.value for a in args]}
        if outer == "Annotated" and args:
            schema = annotation_schema(args[0])
            notes = [a.value for a in args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if notes:
                schema["description"] = notes[0]
            return schema
    raise NotReadable(ast.unparse(node))


def _union(nodes) -> dict:
    parts = [annotation_schema(n) for n in nodes]
    return {} if {} in parts else {"anyOf": parts}


def signature_parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[dict, list[str]]:
    """(JSON Schema of the arguments, problems) of a function: every parameter a property, those without
    a default required."""
    args = function.args
    problems = []
    if args.vararg is not None:
        problems.append(f"*{args.vararg.arg}: a tool's arguments are passed by name; *args cannot be")
    properties, required = {}, []
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for arg, default in list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults)):
        try:
            properties[arg.arg] = annotation_schema(arg.annotation)
        except NotReadable as exc:
            problems.append(f"parameter {arg.arg!r}: the annotation {exc} has no JSON Schema here (types: "
                            f"{TYPES_HELP}); create the tool with POST /api/tools/ and its parameters instead")
            continue
        if default is None:
            required.append(arg.arg)
        elif isinstance(default, ast.Constant):
            properties[arg.arg]["default"] = default.value
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, problems


def import_lines(problems, path: str, imports) -> list[str]:
    """FunctionTool's global_imports (str | {module, imports: [str | {name, alias}]} | {name, alias}) as Python lines."""
    if imports in (None, []):
        return []
    if not isinstance(imports, list):
        problems.add(path, "must be a list of imports")
        return []
    lines = []
    for i, item in enumerate(imports):
        ipath = f"{path}[{i}]"
        if isinstance(item, str) and MODULE.match(item):
            lines.append(f"import {item}")
        elif isinstance(item, dict) and set(item) == {"name", "alias"} and MODULE.match(str(item["name"])) \
                and IDENTIFIER.match(str(item["alias"])):
            lines.append(f"import {item['name']} as {item['alias']}")
        elif isinstance(item, dict) and set(item) == {"module", "imports"} and MODULE.match(str(item["module"])) \
                and isinstance(item["imports"], list) and item["imports"]:
            names = []
            for j, name in enumerate(item["imports"]):
                if isinstance(name, str) and IDENTIFIER.match(name):
                    names.append(name)
                elif isinstance(name, dict) and set(name) == {"name", "alias"} and IDENTIFIER.match(str(name["name"])) \
                        and IDENTIFIER.match(str(name["alias"])):
                    names.append(f"{name['name']} as {name['alias']}")
                else:
                    problems.add(f"{ipath}.imports[{j}]", "must be a name or {name, alias}")
            lines.append(f"from {item['module']} import {', '.join(names)}")
        else:
            problems.add(ipath, "must be a module name, {module, imports} or {name, alias}")
    return lines


def read_function_tool(problems, path: str, config: dict) -> dict | None:
    """A FunctionTool's config -> a customer tool's definition {name, description, parameters, source}."""
    name, source = config.get("name"), config.get("source_code")
    cpath = f"{path}.config"
    if not isinstance(source, str) or not source.strip():
        problems.add(f"{cpath}.source_code", "required: the tool function's Python source")
        return None
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        problems.add(f"{cpath}.name", "required: the tool's name, a Python identifier (the function's name)")
        return None
    description = config.get("description") or ""
    if not isinstance(description, str):
        problems.add(f"{cpath}.description", "must be a string")
        description = ""
    lines = import_lines(problems, f"{cpath}.global_imports", config.get("global_imports"))
    full = ("\n".join(lines) + "\n\n\n" if lines else "") + source.strip() + "\n"
    errors = source_problems(full, name, None)
    first = re.search(r"^(?:async )?def (\w+)", source, re.M)
    if errors and first and first.group(1) != name and not re.search(rf"^(?:async )?def {name}\b", source, re.M):
        errors = [f"the FunctionTool is named {name!r} but its function is {first.group(1)!r}: a tool here is named "
                  "like its function (rename one of them)"]
    if errors:
        for error in errors:
            problems.add(f"{cpath}.source_code", error)
        return None
    function = [n for n in ast.parse(full).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                and n.name == name][-1]
    parameters, errors = signature_parameters(function)
    errors += parameters_problems(parameters) + source_problems(full, name, parameters)
    for error in errors:
        problems.add(f"{cpath}.source_code", error)
    if errors:
        return None
    return {"name": name, "description": description, "parameters": parameters, "source": full}


def same_function(a_source: str, a_description: str, b_source: str, b_description: str) -> bool:
    """The same statements (in any order: an exported tool's function comes before its imports), layout and
    comments aside, and the same description."""
    def statements(source):
        try:
            body = ast.parse(source).body
        except (SyntaxError, ValueError):
            return [source]
        # `import a, b` is exported as two global imports: the same as `import a` and `import b`
        return sorted(ast.dump(ast.Import(names=[name])) for node in body if isinstance(node, ast.Import)
                      for name in node.names) + sorted(ast.dump(node) for node in body if not isinstance(node, ast.Import))

    return (a_description or "") == (b_description or "") and statements(a_source) == statements(b_source)


class DocumentTools:
    """The FunctionTools of one document that become customer tools, by name (the first path that names each)."""

    def __init__(self):
        self.items: dict[str, tuple[str, dict]] = {}

    def add(self, problems, path: str, definition: dict) -> None:
        seen = self.items.get(definition["name"])
        if seen is None:
            self.items[definition["name"]] = (path, definition)
        elif not same_function(seen[1]["source"], seen[1]["description"], definition["source"],
                               definition["description"]):
            problems.add(f"{path}.config.name", f"{definition['name']!r} is also the name of a different FunctionTool "
                                                f"at {seen[0]}: one name, one function (rename one of them)")

    def create(self, *, actor, customer, request) -> tuple[list, dict]:
        """Creates the tools the customer does not have; uses an existing tool with the same function; refuses
        (ValidationFailed naming every path) a name the customer's tools already use for another function.
        Returns (created [{id, name}], problems by path)."""
        existing = {t.name: t for t in Tool.objects.filter(customer=customer, name__in=list(self.items))}
        refused = {}
        for name, (path, definition) in self.items.items():
            tool = existing.get(name)
            if tool is None:
                continue
            if tool.kind != Tool.Kind.PYTHON:
                refused[f"{path}.config.name"] = [f"{name!r} is the name of your {tool.kind} tool (GET /api/tools/): "
                                                  "rename the function in the document"]
            elif not same_function(tool.source, tool.description, definition["source"], definition["description"]):
                refused[f"{path}.config.name"] = [
                    f"{name!r} is the name of your tool {tool.pk} (GET /api/tools/{tool.pk}/) with another source or "
                    "description: rename the function in the document, or change that tool with "
                    f"PATCH /api/tools/{tool.pk}/ first (the platform never replaces a tool its agents may use)"]
        if refused:
            return [], refused
        created = []
        for name, (path, definition) in self.items.items():
            if name not in existing:
                tool = tool_create(actor=actor, customer=customer, request=request, **definition)
                created.append({"id": tool.pk, "name": tool.name})
        return created, {}
