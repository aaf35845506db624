// Renders /api/v1/openapi.json as a page: no framework, no CDN, text only (no innerHTML).
"use strict";
(function () {
  const doc = document.getElementById("doc");
  const toc = document.getElementById("toc");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value; else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // Inline `code` in descriptions, as text nodes and <code> elements.
  function prose(text) {
    return String(text || "").split(/(`[^`]+`)/).map((part) =>
      part.startsWith("`") && part.endsWith("`") ? el("code", {}, part.slice(1, -1)) : part);
  }

  function resolve(spec, schema) {
    let seen = 0;
    while (schema && schema.$ref && seen++ < 10) {
      schema = spec.components.schemas[schema.$ref.split("/").pop()];
    }
    return schema || {};
  }

  function typeOf(spec, schema) {
    schema = schema || {};
    if (schema.$ref) return schema.$ref.split("/").pop();
    if (schema.anyOf) return schema.anyOf.map((s) => typeOf(spec, s)).join(" | ");
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (schema.const !== undefined) return JSON.stringify(schema.const);
    if (schema.type === "array") return typeOf(spec, schema.items) + "[]";
    if (schema.format) return `${schema.type} (${schema.format})`;
    return schema.type || "any";
  }

  function fields(spec, schema) {
    schema = resolve(spec, schema);
    const required = new Set(schema.required || []);
    const rows = Object.entries(schema.properties || {}).map(([name, prop]) => {
      const limits = [];
      for (const key of ["minLength", "maxLength", "minimum", "maximum"]) {
        if (prop[key] !== undefined) limits.push(`${key} ${prop[key]}`);
      }
      if (prop.default !== undefined && prop.default !== null) limits.push(`default ${JSON.stringify(prop.default)}`);
      return el("tr", {},
        el("td", {}, el("code", {}, name), required.has(name) ? el("span", { class: "req" }, " required") : null),
        el("td", {}, typeOf(spec, prop)),
        el("td", {}, prose(prop.description || prop.title || ""), limits.length ? el("div", { class: "muted" }, limits.join(" · ")) : null));
    });
    return el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Field"), el("th", {}, "Type"), el("th", {}, "Notes"))), el("tbody", {}, rows));
  }

  function operation(spec, path, method, op) {
    const id = op.operationId;
    const section = el("section", { class: "op", id },
      el("h2", {}, el("span", { class: `method m-${method}` }, method.toUpperCase()), el("code", {}, path)),
      el("p", { class: "summary" }, op.summary, " ", el("span", { class: "scope" }, prose(op.description))));
    const params = (op.parameters || []).filter((p) => p.in !== "path" || p.name !== "slug");
    if (params.length) {
      section.append(el("h4", {}, "Parameters"), el("table", {}, el("tbody", {}, params.map((p) =>
        el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, `${p.in} · ${typeOf(spec, p.schema)}`), el("td", {}, prose(p.description)))))));
    }
    const body = op.requestBody && op.requestBody.content;
    if (body) {
      const [type, media] = Object.entries(body)[0];
      section.append(el("h4", {}, `Body (${type})`), fields(spec, media.schema));
    }
    section.append(el("h4", {}, "Responses"), el("table", {}, el("tbody", {}, Object.entries(op.responses).map(([code, answer]) => {
      const media = answer.content && answer.content["application/json"];
      return el("tr", {},
        el("td", { class: `status ${code < 300 ? "ok" : "bad"}` }, code),
        el("td", {}, prose(answer.description)),
        el("td", {}, media ? typeOf(spec, media.schema) : ""));
    }))));
    return section;
  }

  fetch("/api/v1/openapi.json").then((r) => r.json()).then((spec) => {
    const base = (spec.servers && spec.servers[0] && spec.servers[0].url) || location.origin;
    doc.replaceChildren(el("div", { class: "intro" },
      el("h1", {}, spec.info.title),
      el("p", {}, prose(spec.info.description)),
      el("pre", {}, `curl -H "Authorization: Bearer $TIDINGS_KEY" \\\n  ${base}/api/v1/products/<slug>/notes?status=published`),
      el("p", {}, "Errors are JSON: ", el("code", {}, '{"error": "…", "errors": {"field": "…"}}'),
        ". Each key has its own rate limit, reported in the X-RateLimit-* headers.")));
    const groups = {};
    for (const [path, methods] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        const tag = (op.tags && op.tags[0]) || "other";
        (groups[tag] = groups[tag] || []).push([path, method, op]);
      }
    }
    toc.replaceChildren();
    for (const [tag, ops] of Object.entries(groups)) {
      toc.append(el("h3", {}, tag));
      for (const [path, method, op] of ops) {
        toc.append(el("a", { href: `#${op.operationId}` }, el("span", { class: `method m-${method}` }, method.toUpperCase()), op.summary));
        doc.append(operation(spec, path, method, op));
      }
    }
    const schemas = el("section", { class: "op", id: "schemas" }, el("h2", {}, "Schemas"));
    for (const [name, schema] of Object.entries(spec.components.schemas)) {
      schemas.append(el("h4", {}, name), fields(spec, schema));
    }
    doc.append(schemas);
    toc.append(el("h3", {}, "Reference"), el("a", { href: "#schemas" }, "Schemas"));
  }).catch((error) => {
    doc.replaceChildren(el("p", {}, `The API description could not be loaded: ${error}`));
  });
})();
