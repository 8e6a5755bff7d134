"""What openapi_conformance.py needs from docs/openapi.yaml, without third-party validators:
loading the spec, checking that it is well-formed, checking its schemas against the FlatBuffers
tables they mirror (schemas/*.fbs), matching request paths to operations, and validating JSON
bodies against the subset of JSON Schema the spec uses.

Only Debian's /usr/bin/python3 and python3-yaml are needed.
"""
import re

import yaml

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# The JSON Schema keywords (OpenAPI 3.0 dialect) this validator understands. The well-formedness
# check refuses a schema using anything else, so the spec cannot silently outgrow the validator.
SCHEMA_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "minimum",
    "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "format", "anyOf",
    "description", "$ref", "example", "x-fbs-table", "x-fbs-enum", "x-fbs-shallow", "nullable",
}
KNOWN_FORMATS = {"int32", "int64", "uuid", "double", "float"}


def load_spec(path):
    with open(path) as f:
        return yaml.safe_load(f)


def resolve(spec, node):
    """Follows $ref (local JSON pointers only) until `node` is not a reference."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            raise ValueError(f"$ref cycle at {ref}")
        seen.add(ref)
        node = lookup_ref(spec, ref)
    return node


def lookup_ref(spec, ref):
    if not isinstance(ref, str) or not ref.startswith("#/"):
        raise ValueError(f"only local references are supported: {ref!r}")
    node = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"unresolved $ref {ref}")
        node = node[part]
    return node


class Operation:
    """One method on one path of the spec."""

    def __init__(self, spec, template, method, path_item, op):
        self.spec = spec
        self.template = template
        self.method = method.upper()
        self.op = op
        self.id = op.get("operationId", f"{self.method} {template}")
        self.listener = path_item.get("x-herald-listener", "admin")
        # Operation-level scope; the public listener needs none.
        self.scope = op.get("x-herald-scope", "public" if self.listener == "public" else None)
        self.segments = template.strip("/").split("/")

    def responses(self):
        return {str(code): resolve(self.spec, r)
                for code, r in self.op.get("responses", {}).items()}

    def response_for(self, status):
        responses = self.responses()
        return responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get(
            "default")

    def matches(self, path):
        return template_matches(self.segments, path)

    def __repr__(self):
        return f"{self.id} ({self.method} {self.template})"


def template_matches(template_segments, path):
    """The router's rule (controlplane/api/router.cc): same segment count, literals equal, a
    {param} matches any non-empty segment."""
    segments = path.split("?", 1)[0].strip("/").split("/")
    if len(segments) != len(template_segments):
        return False
    for t, s in zip(template_segments, segments):
        if t.startswith("{") and t.endswith("}"):
            if not s:
                return False
        elif t != s:
            return False
    return True


def operations(spec):
    ops = []
    for template, item in (spec.get("paths") or {}).items():
        for method in HTTP_METHODS:
            if method in item:
                ops.append(Operation(spec, template, method, item, item[method]))
    return ops


def find_operation(ops, listener, method, path):
    """The operation the router would pick: the matching template with the most literals."""
    best, best_literals = None, -1
    for op in ops:
        if op.listener != listener or op.method != method or not op.matches(path):
            continue
        literals = sum(1 for s in op.segments if not s.startswith("{"))
        if literals > best_literals:
            best, best_literals = op, literals
    return best


def allowed_methods(ops, listener, path):
    """What a 405's Allow header should list for `path` (a GET route also answers HEAD)."""
    methods = set()
    for op in ops:
        if op.listener == listener and op.matches(path):
            methods.add(op.method)
            if op.method == "GET":
                methods.add("HEAD")
    return methods


# --- well-formedness -----------------------------------------------------------------------------


def check_well_formed(spec):
    """Returns a list of problems: unresolved $refs, operations without responses or schemas,
    duplicate operationIds, path parameters not declared, schema keywords the validator does not
    know."""
    problems = []
    if not str(spec.get("openapi", "")).startswith("3.0"):
        problems.append(f"openapi must be 3.0.x, got {spec.get('openapi')!r}")
    for key in ("info", "paths"):
        if key not in spec:
            problems.append(f"missing top-level {key}")

    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                try:
                    lookup_ref(spec, node["$ref"])
                except ValueError as e:
                    problems.append(f"{where}: {e}")
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(spec, "#")

    schemas = spec.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        problems += check_schema_keywords(schema, f"#/components/schemas/{name}")

    seen_ids = {}
    for op in operations(spec):
        where = f"{op.method} {op.template}"
        if "operationId" not in op.op:
            problems.append(f"{where}: no operationId")
        elif op.id in seen_ids:
            problems.append(f"{where}: operationId {op.id} also used by {seen_ids[op.id]}")
        else:
            seen_ids[op.id] = where
        if op.listener not in ("admin", "public"):
            problems.append(f"{where}: x-herald-listener must be admin or public")
        if op.listener == "admin" and op.scope not in ("read", "admin"):
            problems.append(f"{where}: an admin operation needs x-herald-scope read or admin")
        if op.listener == "public" and op.op.get("security") != []:
            problems.append(f"{where}: a public operation must say security: []")
        try:
            responses = op.responses()
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        if not responses:
            problems.append(f"{where}: no responses")
        if not any(str(code).startswith("2") for code in responses):
            problems.append(f"{where}: no 2xx response")
        for code, response in responses.items():
            if not re.fullmatch(r"[1-5]\d\d", str(code)):
                problems.append(f"{where} {code}: give explicit status codes")
            content = response.get("content")
            if not content:
                problems.append(f"{where} {code}: no content (every answer has a body)")
                continue
            for media, body in content.items():
                if "schema" not in body:
                    problems.append(f"{where} {code} {media}: no schema")
                else:
                    problems += check_schema_keywords(body["schema"], f"{where} {code} {media}")
            if op.listener == "admin" and code == "401" and "WWW-Authenticate" not in response.get(
                    "headers", {}):
                problems.append(f"{where} 401: must document the WWW-Authenticate header")
        if op.listener == "admin":
            if "401" not in responses:
                problems.append(f"{where}: an admin operation must document 401")
            if op.scope == "admin" and "403" not in responses:
                problems.append(f"{where}: an admin-scope operation must document 403")
        if "requestBody" in op.op:
            body = resolve(spec, op.op["requestBody"])
            if "application/json" not in body.get("content", {}):
                problems.append(f"{where}: requestBody must be application/json")
            if op.op.get("responses") and "400" not in responses:
                problems.append(f"{where}: takes a body, so must document 400")
        # Every {param} in the template is declared, and nothing else is.
        declared = set()
        for p in list(spec["paths"][op.template].get("parameters", [])) + list(
                op.op.get("parameters", [])):
            try:
                p = resolve(spec, p)
            except ValueError:
                continue
            if p.get("in") == "path":
                declared.add(p.get("name"))
                if p.get("required") is not True:
                    problems.append(f"{where}: path parameter {p.get('name')} must be required")
        wanted = {s[1:-1] for s in op.segments if s.startswith("{") and s.endswith("}")}
        if declared != wanted:
            problems.append(f"{where}: path parameters declared {sorted(declared)}, "
                            f"template has {sorted(wanted)}")
    return problems


def check_schema_keywords(schema, where):
    problems = []
    if not isinstance(schema, dict):
        return [f"{where}: a schema must be an object"]
    if "$ref" in schema:
        return []
    for key in schema:
        if key not in SCHEMA_KEYWORDS:
            problems.append(f"{where}: schema keyword {key!r} is not supported by the validator")
    if "format" in schema and schema["format"] not in KNOWN_FORMATS:
        problems.append(f"{where}: unknown format {schema['format']!r}")
    if schema.get("type") == "object" and "properties" in schema:
        for name in schema.get("required", []):
            if name not in schema["properties"]:
                problems.append(f"{where}: required {name!r} is not a property")
    for name, sub in (schema.get("properties") or {}).items():
        problems += check_schema_keywords(sub, f"{where}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += check_schema_keywords(schema["additionalProperties"], f"{where}.*")
    if "items" in schema:
        problems += check_schema_keywords(schema["items"], f"{where}[]")
    for i, sub in enumerate(schema.get("anyOf", [])):
        problems += check_schema_keywords(sub, f"{where}.anyOf[{i}]")
    return problems


# --- the FlatBuffers tables the schemas mirror ----------------------------------------------------

# FlatBuffers scalar types and the JSON integer range they produce.
FBS_INT_RANGES = {
    "byte": (-2**7, 2**7 - 1), "ubyte": (0, 2**8 - 1), "int8": (-2**7, 2**7 - 1),
    "uint8": (0, 2**8 - 1), "short": (-2**15, 2**15 - 1), "ushort": (0, 2**16 - 1),
    "int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1), "int": (-2**31, 2**31 - 1),
    "uint": (0, 2**32 - 1), "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1),
    "long": (-2**63, 2**63 - 1), "ulong": (0, 2**64 - 1), "int64": (-2**63, 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def parse_fbs(texts):
    """Tables and enums of FlatBuffers schemas, by fully qualified name: tables map to an
    ordered {field: (type, deprecated, optional scalar)}, enums to their value names."""
    tables, enums = {}, {}
    for text in texts:
        text = "\n".join(strip_comment(line) for line in text.splitlines())
        namespace = ""
        for m in re.finditer(
                r"namespace\s+([\w.]+)\s*;|(table|struct)\s+(\w+)[^{]*\{(.*?)\}|"
                r"enum\s+(\w+)\s*:\s*\w+[^{]*\{(.*?)\}", text, re.S):
            if m.group(1):
                namespace = m.group(1) + "."
            elif m.group(2):
                fields = {}
                for fm in re.finditer(r"(\w+)\s*:\s*(\[?\s*[\w.]+\s*\]?)([^;]*);", m.group(4)):
                    rest = fm.group(3)
                    fields[fm.group(1)] = (fm.group(2).replace(" ", ""), "deprecated" in rest,
                                           re.search(r"=\s*null\b", rest) is not None)
                tables[namespace + m.group(3)] = fields
            else:
                enums[namespace + m.group(5)] = [
                    v.split("=")[0].strip() for v in m.group(6).split(",") if v.strip()
                ]
    return tables, enums


def strip_comment(line):
    """The line without its // comment; a // inside a string literal is not one."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif not quoted and line.startswith("//", i):
            return line[:i]
    return line


def check_fbs(spec, tables, enums):
    """Every schema with x-fbs-table has exactly the table's (non-deprecated) fields, with a
    JSON type that FlatBuffers' generator produces for the field's type."""
    problems = []
    schemas = spec.get("components", {}).get("schemas", {})
    answered = response_schema_names(spec)
    for name, schema in schemas.items():
        where = f"#/components/schemas/{name}"
        if "x-fbs-enum" in schema:
            values = enums.get(schema["x-fbs-enum"])
            if values is None:
                problems.append(f"{where}: no enum {schema['x-fbs-enum']} in schemas/*.fbs")
            elif schema.get("enum") != values:
                problems.append(f"{where}: enum {schema.get('enum')} != the .fbs values {values}")
        if "x-fbs-table" not in schema:
            continue
        table_name = schema["x-fbs-table"]
        fields = tables.get(table_name)
        if fields is None:
            problems.append(f"{where}: no table {table_name} in schemas/*.fbs")
            continue
        live = {f: t for f, (t, deprecated, _) in fields.items() if not deprecated}
        props = schema.get("properties", {})
        for f in live:
            if f not in props:
                problems.append(f"{where}: field {table_name}.{f} is missing from the spec")
        for p in props:
            if p not in live:
                problems.append(f"{where}: property {p!r} is not a field of {table_name}")
        for f, fbs_type in live.items():
            if f in props:
                problems += check_fbs_field(spec, f"{where}.{f}", props[f], fbs_type, tables,
                                            enums, table_name, schema.get("x-fbs-shallow", False))
            # In an answer, the generator (output_default_scalars_in_json) writes every scalar:
            # defaults included, and an optional one (= null) that is not set as null.
            if name in answered and f in props and is_scalar(fbs_type, enums, table_name):
                optional = fields[f][2]
                if f not in schema.get("required", []):
                    problems.append(f"{where}: {f} is a scalar the server always writes: "
                                    f"list it in required")
                nullable = resolve(spec, props[f]).get("nullable", False)
                if optional and not nullable:
                    problems.append(f"{where}: {f} is an optional scalar (= null), written as "
                                    f"null when not set: say nullable: true")
                if not optional and nullable:
                    problems.append(f"{where}: {f} is never null (not an optional scalar)")
    return problems


def is_scalar(fbs_type, enums, table_name):
    return (fbs_type in FBS_INT_RANGES or fbs_type in ("bool", "float", "double") or
            qualify(fbs_type, table_name) in enums)


def response_schema_names(spec):
    """Names of the component schemas an answer may carry, directly or nested."""
    names = set()

    def visit(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in names:
                    names.add(name)
                    visit(lookup_ref(spec, ref))
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    for op in operations(spec):
        try:
            visit(list(op.responses().values()))
        except ValueError:
            pass
    return names


def qualify(name, table_name):
    if "." in name:
        return name
    return table_name.rsplit(".", 1)[0] + "." + name


def check_fbs_field(spec, where, prop, fbs_type, tables, enums, table_name, shallow=False):
    """`shallow`: a nested table need only be type object (its fields are documented in the
    .fbs file itself, e.g. the node config's sections)."""
    prop_ref = prop.get("$ref") if isinstance(prop, dict) else None
    prop = resolve(spec, prop)
    json_type = prop.get("type")
    if fbs_type.startswith("["):
        if json_type != "array":
            return [f"{where}: a vector [{fbs_type}] must be type array, not {json_type}"]
        return check_fbs_field(spec, where + "[]", prop.get("items", {}), fbs_type[1:-1], tables,
                               enums, table_name, shallow)
    if fbs_type == "string":
        return [] if json_type == "string" else [f"{where}: a string must be type string"]
    if fbs_type == "bool":
        return [] if json_type == "boolean" else [f"{where}: a bool must be type boolean"]
    if fbs_type in ("float", "double", "float32", "float64"):
        return [] if json_type == "number" else [f"{where}: a {fbs_type} must be type number"]
    if fbs_type in FBS_INT_RANGES:
        if json_type != "integer":
            return [f"{where}: a {fbs_type} must be type integer, not {json_type}"]
        lo, hi = FBS_INT_RANGES[fbs_type]
        problems = []
        # The bounds are part of the contract: a client sizes its integers from them. Only a
        # 64-bit field may leave its maximum out (every JSON parser worth using holds it).
        if "minimum" not in prop or prop["minimum"] < lo:
            problems.append(f"{where}: say minimum (at least {fbs_type}'s {lo})")
        if "maximum" in prop and prop["maximum"] > hi:
            problems.append(f"{where}: maximum above {fbs_type}'s {hi}")
        if "maximum" not in prop and hi < 2**63 - 1:
            problems.append(f"{where}: say maximum (at most {fbs_type}'s {hi})")
        return problems
    qualified = qualify(fbs_type, table_name)
    if qualified in enums:
        if json_type != "string" or prop.get("enum") != enums[qualified]:
            return [f"{where}: enum {qualified} must be type string with enum {enums[qualified]}"]
        return []
    if qualified in tables:
        if json_type != "object":
            return [f"{where}: table {qualified} must be type object"]
        if shallow:
            return []
        if prop.get("x-fbs-table") != qualified:
            return [f"{where}: must reference the schema of table {qualified} "
                    f"(found {prop_ref or 'an inline schema'})"]
        return []
    return [f"{where}: unknown FlatBuffers type {fbs_type}"]


# --- validation -----------------------------------------------------------------------------------

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def validate(spec, schema, value, where="$"):
    """Errors of `value` against `schema` (the keywords of SCHEMA_KEYWORDS), as strings naming
    the JSON path; an empty list when it validates."""
    schema = resolve(spec, schema)
    errors = []
    if value is None and schema.get("nullable"):
        return errors
    if "anyOf" in schema:
        branches = [validate(spec, s, value, where) for s in schema["anyOf"]]
        if all(branches):
            best = min(branches, key=len)
            errors.append(f"{where}: matches none of anyOf; closest: {'; '.join(best)}")
        return errors
    t = schema.get("type")
    if t is not None and not type_ok(t, value):
        return [f"{where}: expected {t}, got {type(value).__name__} {short(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {short(value)} is not one of {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > maximum {schema['maximum']}")
        fmt = schema.get("format")
        if fmt == "int32" and not -2**31 <= value < 2**31:
            errors.append(f"{where}: {value} is not an int32")
        if fmt == "int64" and not -2**63 <= value < 2**64:  # ulong fields reach 2^64 - 1
            errors.append(f"{where}: {value} is not a 64-bit integer")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {short(value)} does not match {schema['pattern']}")
        if schema.get("format") == "uuid" and not UUID_RE.match(value):
            errors.append(f"{where}: {short(value)} is not a UUID")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += validate(spec, schema["items"], item, f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: required property {name!r} is missing")
        extra = schema.get("additionalProperties", True)
        for name, v in value.items():
            if name in props:
                errors += validate(spec, props[name], v, f"{where}.{name}")
            elif extra is False:
                errors.append(f"{where}: property {name!r} is not in the spec")
            elif isinstance(extra, dict):
                errors += validate(spec, extra, v, f"{where}.{name}")
    return errors


def type_ok(t, value):
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise ValueError(f"unknown type {t!r}")


def short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
