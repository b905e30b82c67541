//! Structs: objects, or `serde_json`'s private forms of a number (`arbitrary_precision`) and of raw
//! JSON (`raw_value`).

use serde::Serialize;
use serde::ser;
use serde_json::{Error, Value};

use super::object::Object;
use super::{NUMBER_TOKEN, RAW_VALUE_TOKEN, Writer};
use crate::canonical::number::write_number_text;
use crate::canonical::{error, write_value};

/// A struct being written: an object, or one of `serde_json`'s private forms of a number
/// (`arbitrary_precision`) or of raw JSON (`raw_value`).
pub(in crate::canonical) enum Struct<'w, 'o> {
    Object(Object<'w, 'o>),
    Number(&'w mut Writer<'o>),
    RawValue(&'w mut Writer<'o>),
}

/// The levels of arrays and objects in a value `serde_json` parsed (so at most as many as it reads).
fn value_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The text held by the field of a private `serde_json` form.
fn private_text<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    match serde_json::to_value(value)? {
        Value::String(s) => Ok(s),
        _ => Err(error("a serde_json number or raw value holds its text")),
    }
}

impl ser::SerializeStruct for Struct<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        match self {
            Struct::Object(o) => o.field(key, value),
            Struct::Number(w) if key == NUMBER_TOKEN => {
                let text = private_text(value)?;
                // Out of a float's range (`1e400`): infinite, refused by a limited write.
                if let Ok(f) = text.parse::<f64>() {
                    if w.finite && !f.is_finite() {
                        return w.float(f);
                    }
                }
                write_number_text(w.out, &text)
            }
            Struct::RawValue(w) if key == RAW_VALUE_TOKEN => {
                // Parsed by `serde_json`, so at most as deep as it reads: its levels count here too.
                let raw: Value = serde_json::from_str(&private_text(value)?)?;
                let levels = value_depth(&raw);
                w.enter(levels)?;
                write_value(w.out, &raw);
                w.leave(levels);
                Ok(())
            }
            Struct::Number(_) | Struct::RawValue(_) => Err(error(
                "unexpected field in a serde_json number or raw value",
            )),
        }
    }

    fn end(self) -> Result<(), Error> {
        match self {
            Struct::Object(o) => o.finish(),
            Struct::Number(_) | Struct::RawValue(_) => Ok(()),
        }
    }
}
