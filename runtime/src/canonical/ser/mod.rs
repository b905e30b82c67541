//! The `serde` serializer that writes canonical JSON: the [`Writer`] and its scalars; its compound
//! types (arrays, objects, structs) and map keys are in the submodules.

mod array;
mod key;
mod object;
mod structs;

use serde::Serialize;
use serde::ser;
use serde_json::Error;

use super::error;
use super::number::{write_f64, write_integer};
use super::refusal::{Refusal, Refused, Step};
use super::write_str;
use array::Array;
use object::Object;
use structs::Struct;

/// The name under which `serde_json` serializes a `Number` when `arbitrary_precision` is on: a struct
/// with one field of that name holding the number's text.
pub(super) const NUMBER_TOKEN: &str = "$serde_json::private::Number";
/// The same for a `RawValue` (`raw_value` feature): one field holding the raw JSON text.
pub(super) const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// The serializer: writes canonical JSON into `out`.
pub(super) struct Writer<'o> {
    pub(super) out: &'o mut Vec<u8>,
    /// Arrays and objects open around what is being written.
    depth: usize,
    max_depth: usize,
    /// The length `out` may not exceed (checked after each element and member).
    max_len: usize,
    /// Refuse non-finite floats (a limited write) rather than write `null`.
    finite: bool,
    /// What a write refused, with the path to it gathered as the error travels up.
    pub(super) refused: Option<Refusal>,
}

impl<'o> Writer<'o> {
    pub(super) fn new(
        out: &'o mut Vec<u8>,
        max_depth: usize,
        max_bytes: usize,
        finite: bool,
    ) -> Self {
        Writer {
            out,
            depth: 0,
            max_depth,
            max_len: max_bytes,
            finite,
            refused: None,
        }
    }

    /// Stops the write: records why, and answers the error that carries it up.
    fn refuse(&mut self, refused: Refused) -> Error {
        let message = match refused {
            Refused::Deep => format!("nested more than {} levels deep", self.max_depth),
            Refused::Large => format!("larger than {} bytes", self.max_len),
            Refused::NonFinite(v) => format!("{v} is not a JSON number"),
        };
        self.refused = Some(Refusal::new(refused));
        error(&message)
    }

    /// Opens `levels` arrays or objects (a variant with data opens two: `{"V":[`).
    fn enter(&mut self, levels: usize) -> Result<(), Error> {
        self.depth += levels;
        if self.depth > self.max_depth {
            return Err(self.refuse(Refused::Deep));
        }
        Ok(())
    }

    fn leave(&mut self, levels: usize) {
        self.depth -= levels;
    }

    /// After an element or member: stops once `out` is longer than allowed.
    fn check_len(&mut self) -> Result<(), Error> {
        if self.out.len() > self.max_len {
            return Err(self.refuse(Refused::Large));
        }
        Ok(())
    }

    /// On the way up from an error: the step it came through, if it is a refusal.
    fn step(&mut self, step: impl FnOnce() -> Step) {
        if let Some(r) = &mut self.refused {
            r.path.push(step());
        }
    }

    fn float(&mut self, f: f64) -> Result<(), Error> {
        if self.finite && !f.is_finite() {
            let value = if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            return Err(self.refuse(Refused::NonFinite(value)));
        }
        write_f64(self.out, f);
        Ok(())
    }
}

impl<'w, 'o> ser::Serializer for &'w mut Writer<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'w, 'o>;
    type SerializeTuple = Array<'w, 'o>;
    type SerializeTupleStruct = Array<'w, 'o>;
    type SerializeTupleVariant = Array<'w, 'o>;
    type SerializeMap = Object<'w, 'o>;
    type SerializeStruct = Struct<'w, 'o>;
    type SerializeStructVariant = Object<'w, 'o>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        if u64::try_from(v).is_err() && i64::try_from(v).is_err() {
            return Err(error("number out of range"));
        }
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        let v = u64::try_from(v).map_err(|_| error("number out of range"))?;
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v)
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.enter(1)?;
        self.out.push(b'[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_integer(self.out, *b);
        }
        self.out.push(b']');
        self.leave(1);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        write_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.enter(1)?;
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        if let Err(e) = value.serialize(&mut *self) {
            self.step(|| Step::Key(variant.to_owned()));
            return Err(e);
        }
        self.out.push(b'}');
        self.leave(1);
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'w, 'o>, Error> {
        self.enter(1)?;
        self.out.push(b'[');
        Ok(Array {
            w: self,
            len: 0,
            variant: None,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Array<'w, 'o>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Array<'w, 'o>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'w, 'o>, Error> {
        self.enter(2)?;
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.extend_from_slice(b":[");
        Ok(Array {
            w: self,
            len: 0,
            variant: Some(variant),
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Object<'w, 'o>, Error> {
        self.enter(1)?;
        Ok(Object::begin(self, None))
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Struct<'w, 'o>, Error> {
        Ok(match name {
            NUMBER_TOKEN => Struct::Number(self),
            RAW_VALUE_TOKEN => Struct::RawValue(self),
            _ => {
                self.enter(1)?;
                Struct::Object(Object::begin(self, None))
            }
        })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Object<'w, 'o>, Error> {
        self.enter(2)?;
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        Ok(Object::begin(self, Some(variant)))
    }
}
