//! Renders the run-file JSON Schema as a Markdown reference of every key and op, with types,
//! defaults and the doc comments of the config types. `docs/reference.md` is this output; a test
//! fails when it is out of date (`REGENERATE=1 cargo test` rewrites it).

use serde_json::{Map, Value};
use std::collections::{BTreeSet, VecDeque};

fn defs(schema: &Value) -> Map<String, Value> {
    schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
}

fn anchor(name: &str) -> String {
    name.to_lowercase()
}

fn one_line(s: &str) -> String {
    s.split("\n\n")
        .next()
        .unwrap_or(s)
        .replace('\n', " ")
        .replace('|', "\\|")
        .trim()
        .to_string()
}

/// A short type description, with links to definitions (queued for rendering).
fn type_str(v: &Value, queue: &mut VecDeque<String>) -> String {
    if let Some(r) = ref_name(v) {
        queue.push_back(r.to_string());
        return format!("[{r}](#{})", anchor(r));
    }
    if let Some(all) = v.get("allOf").and_then(Value::as_array)
        && all.len() == 1
    {
        return type_str(&all[0], queue);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = v.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .map(|a| {
                    if let Some(c) = a.get("const") {
                        format!("`{}`", c.as_str().map_or(c.to_string(), str::to_string))
                    } else if let Some(props) = a.get("properties").and_then(Value::as_object)
                        && props.len() == 1
                        && a.get("required").is_some()
                    {
                        let (k, inner) = props.iter().next().expect("one property");
                        format!("`{k}:` {}", type_str(inner, queue))
                    } else {
                        type_str(a, queue)
                    }
                })
                .collect();
            return parts.join(" or ");
        }
    }
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        return e
            .iter()
            .map(|x| format!("`{}`", x.as_str().map_or(x.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    if let Some(c) = v.get("const") {
        return format!("`{}`", c.as_str().map_or(c.to_string(), str::to_string));
    }
    let ty = match v.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| *s != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => String::new(),
    };
    let mut out = match ty.as_str() {
        "array" => match v.get("items") {
            Some(items) => format!("list of {}", type_str(items, queue)),
            None => "list".into(),
        },
        "object" => match v.get("additionalProperties") {
            Some(ap) if ap.is_object() => format!("map of name → {}", type_str(ap, queue)),
            _ => "mapping".into(),
        },
        "" => "any".into(),
        other => other.to_string(),
    };
    let min = v.get("minimum").and_then(Value::as_f64);
    let max = v.get("maximum").and_then(Value::as_f64);
    match (min, max) {
        (Some(a), Some(b)) => out.push_str(&format!(" in [{a}, {b}]")),
        (Some(a), None) if v.get("format").is_none() => out.push_str(&format!(" ≥ {a}")),
        (None, Some(b)) => out.push_str(&format!(" ≤ {b}")),
        _ => {}
    }
    out
}

fn default_str(v: &Value) -> String {
    match v.get("default") {
        None => String::new(),
        Some(Value::Null) => "none".into(),
        Some(d) => format!("`{}`", serde_json::to_string(d).unwrap_or_default()),
    }
}

fn render_object(out: &mut String, obj: &Value, queue: &mut VecDeque<String>) {
    let Some(props) = obj.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: BTreeSet<&str> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
    for (k, v) in props {
        let desc = v
            .get("description")
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        let def = if required.contains(k.as_str()) {
            "required".to_string()
        } else {
            default_str(v)
        };
        out.push_str(&format!(
            "| `{k}` | {} | {def} | {desc} |\n",
            type_str(v, queue)
        ));
    }
    out.push('\n');
}

/// The Markdown reference for `schema` (a schemars JSON Schema of the run file).
pub fn markdown(schema: &Value) -> String {
    let defs = defs(schema);
    let mut out = String::from(
        "# Run-file reference\n\nGenerated from the JSON Schema (`whet schema`) by `whet schema --markdown`; \
         do not edit by hand. Every key, its type, its default and its meaning. Ops and steps are written \
         as one-key mappings: `- rotate: { degrees: 12, p: 0.7 }`.\n\n## Top level\n\n",
    );
    let mut queue = VecDeque::new();
    render_object(&mut out, schema, &mut queue);
    let mut done = BTreeSet::new();
    while let Some(name) = queue.pop_front() {
        if !done.insert(name.clone()) {
            continue;
        }
        let Some(def) = defs.get(&name) else { continue };
        out.push_str(&format!("## {name}\n\n"));
        if let Some(d) = def.get("description").and_then(Value::as_str) {
            out.push_str(d.trim());
            out.push_str("\n\n");
        }
        if def.get("properties").is_some() {
            render_object(&mut out, def, &mut queue);
        } else if let Some(alts) = def
            .get("oneOf")
            .or_else(|| def.get("anyOf"))
            .and_then(Value::as_array)
        {
            out.push_str("| form | meaning |\n|---|---|\n");
            for a in alts {
                let desc = a
                    .get("description")
                    .and_then(Value::as_str)
                    .map(one_line)
                    .unwrap_or_default();
                let form = if let Some(props) = a.get("properties").and_then(Value::as_object)
                    && props.len() == 1
                {
                    let (k, inner) = props.iter().next().expect("one property");
                    format!("`{k}:` {}", type_str(inner, &mut queue))
                } else {
                    type_str(a, &mut queue)
                };
                out.push_str(&format!("| {form} | {desc} |\n"));
            }
            out.push('\n');
        } else {
            out.push_str(&format!("Type: {}\n\n", type_str(def, &mut queue)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_keys_defaults_and_ops() {
        let schema = json!({
            "type": "object",
            "properties": {
                "seed": {"type": "integer", "default": 0, "description": "The seed."},
                "ops": {"type": "array", "items": {"$ref": "#/$defs/Op"}},
                "name": {"type": "string"}
            },
            "required": ["name"],
            "$defs": {
                "Op": {"oneOf": [
                    {"type": "object", "properties": {"rotate": {"$ref": "#/$defs/Rotate"}}, "required": ["rotate"], "description": "Rotates."}
                ]},
                "Rotate": {"type": "object", "properties": {"p": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 1.0}}}
            }
        });
        let md = markdown(&schema);
        assert!(
            md.contains("| `seed` | integer | `0` | The seed. |"),
            "{md}"
        );
        assert!(md.contains("| `name` | string | required |"), "{md}");
        assert!(md.contains("list of [Op](#op)"), "{md}");
        assert!(
            md.contains("| `rotate:` [Rotate](#rotate) | Rotates. |"),
            "{md}"
        );
        assert!(md.contains("| `p` | number in [0, 1] | `1.0` |"), "{md}");
    }
}
