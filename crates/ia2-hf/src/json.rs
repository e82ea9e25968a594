//! Small typed accessors over a JSON object, producing errors that name the file and field.

use crate::error::{Error, Result, config_err};
use serde_json::{Map, Value};
use std::path::Path;

/// A JSON object read from `path`; `null` fields are treated as absent.
pub(crate) struct Fields<'a> {
    pub path: &'a Path,
    pub obj: &'a Map<String, Value>,
    /// Prefix for nested objects, e.g. "rope_scaling.".
    pub prefix: String,
}

impl<'a> Fields<'a> {
    pub fn new(path: &'a Path, value: &'a Value) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| config_err(path, "<root>", "expected a JSON object"))?;
        Ok(Self {
            path,
            obj,
            prefix: String::new(),
        })
    }

    pub fn nested(&self, field: &str) -> Result<Option<Fields<'a>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(obj)) => Ok(Some(Fields {
                path: self.path,
                obj,
                prefix: format!("{}{field}.", self.prefix),
            })),
            Some(v) => Err(self.err(field, format!("expected an object, found {v}"))),
        }
    }

    pub fn err(&self, field: &str, message: impl Into<String>) -> Error {
        config_err(self.path, format!("{}{field}", self.prefix), message)
    }

    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    pub fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.err(field, format!("expected a non-negative integer, found {v}"))
                }),
        }
    }

    pub fn req_usize(&self, field: &str) -> Result<usize> {
        self.opt_usize(field)?
            .ok_or_else(|| self.err(field, "missing (expected a non-negative integer)"))
    }

    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected a number, found {v}"))),
        }
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected true or false, found {v}"))),
        }
    }

    pub fn opt_str(&self, field: &str) -> Result<Option<&'a str>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected a string, found {v}"))),
        }
    }

    /// A token id field: absent/null → None; int → Some.
    pub fn opt_token_id(&self, field: &str) -> Result<Option<u32>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => as_u32(v).map(Some).ok_or_else(|| {
                self.err(field, format!("expected a token id (integer), found {v}"))
            }),
        }
    }

    /// A token id field that may be an int or a list of ints (e.g. `eos_token_id`).
    /// Absent/null → None.
    pub fn opt_token_ids(&self, field: &str) -> Result<Option<Vec<u32>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    as_u32(v).ok_or_else(|| {
                        self.err(
                            field,
                            format!("expected a list of token ids, found element {v}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => as_u32(v).map(|x| Some(vec![x])).ok_or_else(|| {
                self.err(
                    field,
                    format!("expected a token id or a list of token ids, found {v}"),
                )
            }),
        }
    }

    /// A special token field of tokenizer_config.json: a string, or an AddedToken dict
    /// with a `content` string. Absent/null → None.
    pub fn opt_token_content(&self, field: &str) -> Result<Option<String>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Object(obj)) => match obj.get("content") {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                _ => Err(self.err(
                    field,
                    "expected an AddedToken object with a string `content`",
                )),
            },
            Some(v) => Err(self.err(
                field,
                format!("expected a string or an AddedToken object, found {v}"),
            )),
        }
    }
}

fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|x| u32::try_from(x).ok())
}

/// Reads `path` as JSON if it exists; `Ok(None)` if it does not.
pub(crate) fn read_json_opt(path: &Path) -> Result<Option<Value>> {
    if path.is_file() {
        crate::error::read_json(path).map(Some)
    } else {
        Ok(None)
    }
}
