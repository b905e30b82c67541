//! Arrays: sequences, tuples and tuple variants.

use serde::Serialize;
use serde::ser;
use serde_json::Error;

use super::Writer;
use crate::canonical::refusal::Step;

/// A sequence, tuple or tuple variant being written.
pub(in crate::canonical) struct Array<'w, 'o> {
    pub(super) w: &'w mut Writer<'o>,
    /// The elements written so far.
    pub(super) len: usize,
    /// Inside `{"variant":…}`: closed with `]}`.
    pub(super) variant: Option<&'static str>,
}

impl Array<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if self.len > 0 {
            self.w.out.push(b',');
        }
        if let Err(e) = value.serialize(&mut *self.w) {
            self.w.step(|| Step::Index(self.len));
            if let Some(variant) = self.variant {
                self.w.step(|| Step::Key(variant.to_owned()));
            }
            return Err(e);
        }
        self.len += 1;
        self.w.check_len()
    }

    fn finish(self) -> Result<(), Error> {
        self.w.out.push(b']');
        if self.variant.is_some() {
            self.w.out.push(b'}');
            self.w.leave(2);
        } else {
            self.w.leave(1);
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Array<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Array<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Array<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Array<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}
