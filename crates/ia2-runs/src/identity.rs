//! Identity by full configuration: the sha256 of the canonical JSON (keys sorted at every level, no
//! whitespace) of everything that determines a result. Two runs (or evaluations) with the same identity are
//! interchangeable; a finished one is reused only when its recorded identity matches, and a mismatch is
//! explained field by field ([`diff`]).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Bumped when a change of the code changes results (objectives, decoding, data pipeline): every identity
/// written before then stops matching.
pub const CODE_VERSION: &str = "ia2-results-1";

/// `value` as canonical JSON: object keys sorted at every level, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// sha256 (hex) of the canonical JSON of `value`.
pub fn identity_of(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

/// `value` flattened to `a.b.c` paths (arrays as `a[0]`), values as compact JSON.
pub fn flatten(value: &Value) -> BTreeMap<String, String> {
    fn go(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    go(&p, x, out);
                }
            }
            Value::Array(a) if !a.is_empty() && a.len() <= 16 => {
                for (i, x) in a.iter().enumerate() {
                    go(&format!("{prefix}[{i}]"), x, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), canonical_json(other));
            }
        }
    }
    let mut out = BTreeMap::new();
    go("", value, &mut out);
    out
}

/// The fields that differ between two identity inputs, as `field: old → new` lines (`(absent)` for a
/// field only one side has).
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    let (a, b) = (flatten(old), flatten(new));
    let absent = "(absent)".to_string();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).unwrap_or(&absent), b.get(k).unwrap_or(&absent));
            (x != y).then(|| format!("{k}: {x} → {y}"))
        })
        .collect()
}

/// A finished result whose identity does not match: says what differs and how to replace it.
pub fn mismatch_message(
    what: &str,
    path: &std::path::Path,
    differences: &[String],
    flag: &str,
) -> String {
    let list = if differences.is_empty() {
        "  (the recorded identity differs; no field-level difference could be read)".to_string()
    } else {
        differences
            .iter()
            .map(|d| format!("  {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "a finished {what} with another configuration exists at {}; it differs in:\n{list}\n\
         pass {flag} to replace it (atomically; the old one stays intact if the new one fails), or choose \
         another output directory",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_identity_depends_on_values_only() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": null}});
        let b = json!({"a": {"x": null, "y": [1, 2]}, "b": 1});
        assert_eq!(canonical_json(&a), r#"{"a":{"x":null,"y":[1,2]},"b":1}"#);
        assert_eq!(identity_of(&a), identity_of(&b));
        assert_ne!(
            identity_of(&a),
            identity_of(&json!({"b": 2, "a": {"y": [1, 2], "x": null}}))
        );
        // sha256 of "{}".
        assert_eq!(
            identity_of(&json!({})),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn diff_names_each_changed_field() {
        let old = json!({"lr": 0.1, "ia2": {"seed": 1, "epochs": 0}, "x": 1});
        let new = json!({"lr": 0.1, "ia2": {"seed": 1, "epochs": 50}, "y": 2});
        assert_eq!(
            diff(&old, &new),
            ["ia2.epochs: 0 → 50", "x: 1 → (absent)", "y: (absent) → 2"]
        );
        assert!(diff(&old, &old).is_empty());
    }
}
