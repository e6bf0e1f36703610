#!/usr/bin/env python3
"""Render api/openapi.json as a Markdown API reference (docs/api-reference.md).

    python3 scripts/gen-api-reference.py [--openapi api/openapi.json] [--out docs/api-reference.md]

The reference lists every path and method (summary, description, auth,
parameters, request body fields, responses with status codes and headers), the
error format and the component schemas.  It says only what the document says:
per-operation roles are not in the document, so each operation shows whether it
needs a bearer token and the roles are described once (from bearerAuth).

Output is a pure function of the input (document order, no timestamps) so that
the ctest test_api_reference_current can regenerate it and diff against the
committed file.  Python 3 standard library only.
"""
import argparse
import json
import re
import sys

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
MAX_DEPTH = 4  # nested object properties flattened into dotted rows up to this depth


class RefError(Exception):
    pass


def resolve(doc, node):
    """Follows local $refs ("#/a/b") until a non-reference node; returns (node, name)."""
    name = None
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            raise RefError("unsupported or cyclic $ref %r" % ref)
        seen.add(ref)
        cur = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(cur, dict) or part not in cur:
                raise RefError("dangling $ref %r" % ref)
            cur = cur[part]
        name = ref.rsplit("/", 1)[1]
        node = cur
    return node, name


def cell(text):
    """One Markdown table cell: no newlines, pipes escaped."""
    text = " ".join(str(text).split())
    return text.replace("|", "\\|")


def code(text):
    return "`%s`" % str(text).replace("`", "'")


def anchor(text):
    """GitHub-style heading anchor."""
    a = text.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def schema_link(name):
    return "[%s](#%s)" % (name, anchor("schema " + name))


def type_text(doc, schema):
    """Short type description of a schema: `string`, `integer (int64)`, [Vm], array of ..."""
    if not isinstance(schema, dict):
        return "any"
    if "$ref" in schema:
        _, name = resolve(doc, schema)
        return schema_link(name)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            sep = " or " if key == "oneOf" else " and/or "
            return sep.join(type_text(doc, s) for s in schema[key])
    if "allOf" in schema:
        return " + ".join(type_text(doc, s) for s in schema["allOf"])
    t = schema.get("type", "any")
    if t == "array":
        text = "array of %s" % type_text(doc, schema.get("items", {}))
    elif t == "object" and "properties" not in schema and isinstance(
            schema.get("additionalProperties"), dict):
        text = "map of %s" % type_text(doc, schema["additionalProperties"])
    else:
        text = code(t)
        if "format" in schema:
            text += " (%s)" % schema["format"]
    if schema.get("nullable"):
        text += ", nullable"
    return text


def constraints(schema):
    """Enum, default, bounds and pattern of a schema, as one phrase."""
    if not isinstance(schema, dict):
        return ""
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(code(json.dumps(v)) for v in schema["enum"]))
    for key, label in (("minimum", "min"), ("maximum", "max"), ("minLength", "min length"),
                       ("maxLength", "max length"), ("minItems", "min items"),
                       ("maxItems", "max items")):
        if key in schema:
            parts.append("%s %s" % (label, schema[key]))
    if "pattern" in schema:
        parts.append("pattern " + code(schema["pattern"]))
    if "default" in schema:
        parts.append("default " + code(json.dumps(schema["default"])))
    if schema.get("additionalProperties") is False and "properties" in schema:
        parts.append("no other fields")
    return "; ".join(parts)


def describe(schema):
    desc = schema.get("description", "") if isinstance(schema, dict) else ""
    extra = constraints(schema)
    if desc and extra:
        return "%s (%s)" % (desc, extra)
    return desc or extra


def field_rows(doc, schema, prefix="", depth=0):
    """(path, type, required, description) rows for an object's properties, nested
    inline objects (and arrays of them, as name[].x) flattened with dotted paths.
    Referenced schemas are linked, not expanded."""
    rows = []
    if not isinstance(schema, dict) or "$ref" in schema:
        return rows
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        path = prefix + name
        rows.append((path, type_text(doc, prop), name in required, describe(prop)))
        if depth + 1 >= MAX_DEPTH or not isinstance(prop, dict):
            continue
        if prop.get("type") == "object" and "properties" in prop:
            rows.extend(field_rows(doc, prop, path + ".", depth + 1))
        elif prop.get("type") == "array" and isinstance(prop.get("items"), dict) and \
                "properties" in prop["items"]:
            rows.extend(field_rows(doc, prop["items"], path + "[].", depth + 1))
        for key in ("oneOf", "anyOf"):
            for alt in prop.get(key, []):
                if isinstance(alt, dict) and "properties" in alt and "$ref" not in alt:
                    rows.extend(field_rows(doc, alt, path + ".", depth + 1))
    return rows


def fields_table(doc, schema, out):
    rows = field_rows(doc, schema)
    if not rows:
        out.append("Type: %s%s" % (type_text(doc, schema),
                                   (". " + describe(schema)) if describe(schema) else ""))
        out.append("")
        return
    out.append("| Field | Type | Required | Description |")
    out.append("|---|---|---|---|")
    for path, typ, req, desc in rows:
        out.append("| %s | %s | %s | %s |" % (code(path), cell(typ), "yes" if req else "no",
                                             cell(desc)))
    out.append("")


def content_schemas(doc, content):
    """[(media type, schema)] of a request body or response content map."""
    return [(mt, body.get("schema", {})) for mt, body in (content or {}).items()]


def operation_auth(doc, op):
    security = op.get("security", doc.get("security", []))
    if not security:
        return "none (public)"
    names = []
    for req in security:
        names.extend(req.keys())
    schemes = doc.get("components", {}).get("securitySchemes", {})
    parts = []
    for n in names:
        s = schemes.get(n, {})
        kind = "bearer token" if s.get("scheme") == "bearer" else s.get("type", n)
        parts.append("%s (%s, see [Authentication](#authentication))" % (kind, code(n)))
    return " or ".join(parts)


def render_parameters(doc, params, out):
    if not params:
        return
    out.append("**Parameters**")
    out.append("")
    out.append("| Name | In | Type | Required | Description |")
    out.append("|---|---|---|---|---|")
    for p in params:
        p, _ = resolve(doc, p)
        schema = p.get("schema", {})
        desc = p.get("description", "")
        extra = constraints(schema)
        if extra:
            desc = "%s (%s)" % (desc, extra) if desc else extra
        out.append("| %s | %s | %s | %s | %s |" % (
            code(p["name"]), p.get("in", ""), cell(type_text(doc, schema)),
            "yes" if p.get("required") else "no", cell(desc)))
    out.append("")


def render_request_body(doc, body, out):
    if not body:
        return
    body, name = resolve(doc, body)
    for mt, schema in content_schemas(doc, body.get("content")):
        resolved, sname = resolve(doc, schema)
        what = schema_link(sname) if sname else type_text(doc, schema)
        req = "required" if body.get("required") else "optional"
        out.append("**Request body** (%s, %s): %s" % (code(mt), req, what))
        out.append("")
        if body.get("description") and body["description"] != "JSON document":
            out.append(body["description"])
            out.append("")
        fields_table(doc, resolved, out)


def render_responses(doc, responses, out):
    out.append("**Responses**")
    out.append("")
    out.append("| Status | Description | Body | Headers |")
    out.append("|---|---|---|---|")
    def order(status):  # numeric codes ascending, then 2XX-style ranges, "default" last
        return (0, int(status), "") if status.isdigit() else (1, 0, status)
    for status in sorted(responses, key=order):
        r, rname = resolve(doc, responses[status])
        desc = r.get("description", "")
        if rname:
            desc = "%s ([%s](#%s))" % (desc, rname, anchor("response " + rname))
        bodies = []
        for mt, schema in content_schemas(doc, r.get("content")):
            bodies.append("%s %s" % (code(mt), type_text(doc, schema)))
        headers = ", ".join(code(h) for h in r.get("headers", {}))
        out.append("| %s | %s | %s | %s |" % (code(status), cell(desc),
                                             cell("; ".join(bodies) or "-"),
                                             cell(headers or "-")))
    out.append("")


def operations(doc):
    """(tag, method, path, op) in document order; an untagged operation goes under 'other'."""
    for path, item in doc.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in HTTP_METHODS:
            if method in item:
                op = dict(item[method])
                op["parameters"] = shared + op.get("parameters", [])
                tags = op.get("tags") or ["other"]
                yield tags[0], method.upper(), path, op


def render(doc):
    out = []
    info = doc.get("info", {})
    out.append("# %s reference" % info.get("title", "API"))
    out.append("")
    out.append("<!-- Generated by scripts/gen-api-reference.py from api/openapi.json: do not "
               "edit by hand.  Regenerate with `python3 scripts/gen-api-reference.py`; the "
               "ctest test_api_reference_current fails when this file is stale. -->")
    out.append("")
    out.append("Version %s (OpenAPI %s).  %s" % (info.get("version", "?"),
                                                 doc.get("openapi", "?"),
                                                 info.get("description", "")))
    out.append("")
    servers = [s.get("url") for s in doc.get("servers", []) if s.get("url")]
    if servers:
        out.append("Default server: %s.  Request and response bodies are JSON unless stated."
                   % ", ".join(code(s) for s in servers))
        out.append("")
    out.append("Narrative documentation: [api.md](api.md).")
    out.append("")

    ops = list(operations(doc))
    tag_order = [t["name"] for t in doc.get("tags", [])]
    for tag, _, _, _ in ops:
        if tag not in tag_order:
            tag_order.append(tag)

    out.append("## Contents")
    out.append("")
    out.append("- [Authentication](#authentication)")
    out.append("- [Errors](#errors)")
    for tag in tag_order:
        if any(t == tag for t, _, _, _ in ops):
            out.append("- [Endpoints: %s](#%s)" % (tag, anchor("endpoints: " + tag)))
    out.append("- [Schemas](#schemas)")
    out.append("")
    out.append("| Method | Path | Summary |")
    out.append("|---|---|---|")
    for tag in tag_order:
        for t, method, path, op in ops:
            if t == tag:
                out.append("| %s | [%s](#%s) | %s |" % (
                    method, code(path), anchor("%s %s" % (method, path)),
                    cell(op.get("summary", ""))))
    out.append("")

    out.append("## Authentication")
    out.append("")
    schemes = doc.get("components", {}).get("securitySchemes", {})
    default = [n for req in doc.get("security", []) for n in req]
    for name, s in schemes.items():
        kind = "HTTP %s" % s.get("scheme") if s.get("type") == "http" else s.get("type", "")
        line = "- %s: %s" % (code(name), kind)
        if s.get("scheme") == "bearer":
            line += " (`Authorization: Bearer <token>`)"
        if s.get("description"):
            line += ". " + s["description"]
        out.append(line)
    out.append("")
    if default:
        out.append("Every operation needs %s unless its **Auth** line says none."
                   % " or ".join(code(n) for n in default))
        out.append("")

    out.append("## Errors")
    out.append("")
    components = doc.get("components", {})
    err = components.get("schemas", {}).get("Error")
    if err:
        out.append("Every error response carries the %s document:" % schema_link("Error"))
        out.append("")
        fields_table(doc, err, out)
    responses = components.get("responses", {})
    if responses:
        out.append("Shared error responses (referenced by the operations below):")
        out.append("")
        out.append("| Response | Description | Body |")
        out.append("|---|---|---|")
        for name, r in responses.items():
            bodies = "; ".join("%s %s" % (code(mt), type_text(doc, s))
                               for mt, s in content_schemas(doc, r.get("content")))
            out.append('| <a id="%s"></a>%s | %s | %s |' % (
                anchor("response " + name), code(name), cell(r.get("description", "")),
                cell(bodies or "-")))
        out.append("")

    for tag in tag_order:
        tagged = [(m, p, o) for t, m, p, o in ops if t == tag]
        if not tagged:
            continue
        out.append("## Endpoints: %s" % tag)
        out.append("")
        for method, path, op in tagged:
            out.append("### %s %s" % (method, path))
            out.append("")
            if op.get("summary"):
                out.append(op["summary"] + ".")
                out.append("")
            if op.get("description"):
                out.append(op["description"])
                out.append("")
            meta = ["**Auth:** %s" % operation_auth(doc, op)]
            if op.get("operationId"):
                meta.append("**Operation id:** %s" % code(op["operationId"]))
            if op.get("deprecated"):
                meta.append("**Deprecated**")
            out.append(".  ".join(meta))
            out.append("")
            render_parameters(doc, op.get("parameters"), out)
            render_request_body(doc, op.get("requestBody"), out)
            render_responses(doc, op.get("responses", {}), out)

    out.append("## Schemas")
    out.append("")
    for name, schema in components.get("schemas", {}).items():
        out.append("### Schema %s" % name)
        out.append("")
        if isinstance(schema, dict) and schema.get("description"):
            out.append(schema["description"])
            out.append("")
        fields_table(doc, schema, out)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--openapi", default="api/openapi.json", help="OpenAPI 3 JSON document")
    ap.add_argument("--out", default="docs/api-reference.md", help="Markdown file to write "
                    "('-' = stdout)")
    args = ap.parse_args(argv)
    try:
        with open(args.openapi, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print("gen-api-reference: cannot read %s: %s" % (args.openapi, e), file=sys.stderr)
        return 1
    if not isinstance(doc, dict) or "paths" not in doc:
        print("gen-api-reference: %s is not an OpenAPI document (no paths)" % args.openapi,
              file=sys.stderr)
        return 1
    try:
        text = render(doc)
    except (RefError, KeyError, TypeError, AttributeError) as e:
        print("gen-api-reference: %s: %s" % (args.openapi, e), file=sys.stderr)
        return 1
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
