//! Unknown fields of a JSON document, found by walking it against the JSON Schema of the type it
//! is read as: no tree of the document is built, so a large file costs little beyond its typed
//! value. An object whose schema lists properties has each key checked; anything else is skipped.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A field the schema does not have: its path (`tasks[2].depends-on`), its name, and the known
/// name it most likely meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    pub path: String,
    pub name: String,
    pub meant: Option<String>,
}

/// The unknown fields of `text` (valid JSON) against `schema` (a JSON Schema with `$defs`).
pub fn unknown_fields(text: &str, schema: &Value) -> Result<Vec<Unknown>, serde_json::Error> {
    let state = RefCell::new(State::default());
    let mut de = serde_json::Deserializer::from_str(text);
    Walk {
        node: Some(schema),
        root: schema,
        state: &state,
    }
    .deserialize(&mut de)?;
    Ok(state.into_inner().found)
}

#[derive(Debug, Default)]
struct State {
    path: String,
    found: Vec<Unknown>,
}

#[derive(Clone, Copy)]
struct Walk<'a> {
    node: Option<&'a Value>,
    root: &'a Value,
    state: &'a RefCell<State>,
}

impl<'a> Walk<'a> {
    /// The schema node with `$ref`s followed and an optional's non-null alternative taken.
    fn resolved(&self) -> Option<&'a Value> {
        let mut node = self.node?;
        for _ in 0..16 {
            if let Some(name) = node
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                node = self.root.get("$defs")?.get(name)?;
                continue;
            }
            let alternatives = node
                .get("anyOf")
                .or_else(|| node.get("oneOf"))
                .and_then(Value::as_array);
            if let Some(a) = alternatives.and_then(|alts| {
                alts.iter()
                    .find(|a| a.get("type").and_then(Value::as_str) != Some("null"))
            }) {
                node = a;
                continue;
            }
            break;
        }
        Some(node)
    }

    fn at(self, node: Option<&'a Value>) -> Self {
        Walk { node, ..self }
    }

    /// Appends `segment` to the path; returns the length to truncate back to.
    fn enter(&self, segment: fmt::Arguments<'_>) -> usize {
        let mut state = self.state.borrow_mut();
        let len = state.path.len();
        let _ = fmt::write(&mut state.path, segment);
        len
    }

    fn leave(&self, len: usize) {
        self.state.borrow_mut().path.truncate(len);
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let items = self.resolved().and_then(|n| n.get("items"));
        let mut index = 0usize;
        loop {
            let len = self.enter(format_args!("[{index}]"));
            let next = seq.next_element_seed(self.at(items))?;
            self.leave(len);
            if next.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let properties = self
            .resolved()
            .and_then(|n| n.get("properties"))
            .and_then(Value::as_object);
        while let Some(key) = map.next_key::<String>()? {
            let dot = if self.state.borrow().path.is_empty() {
                ""
            } else {
                "."
            };
            let len = self.enter(format_args!("{dot}{key}"));
            match properties.map(|p| p.get(&key)) {
                Some(Some(sub)) => map.next_value_seed(self.at(Some(sub)))?,
                Some(None) => {
                    let meant = properties.and_then(|p| close(&key, p.keys()));
                    {
                        let mut state = self.state.borrow_mut();
                        let path = state.path.clone();
                        state.found.push(Unknown {
                            path,
                            name: key,
                            meant,
                        });
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            self.leave(len);
        }
        Ok(())
    }
}

/// The known name `name` most likely meant: the same once case, `-`, `_` and a plural `s` are
/// ignored.
fn close<'k>(name: &str, known: impl Iterator<Item = &'k String>) -> Option<String> {
    let norm = |s: &str| s.to_lowercase().replace(['-', '_', ' '], "");
    let target = norm(name);
    let singular = target.trim_end_matches('s').to_string();
    known
        .into_iter()
        .find(|k| {
            let k = norm(k);
            k == target || k.trim_end_matches('s') == singular
        })
        .cloned()
}
