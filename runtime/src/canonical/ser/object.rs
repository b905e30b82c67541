//! Objects: maps and struct variants (and structs, through [`Struct`](super::structs::Struct)),
//! their members put in key order.

use std::cmp::Ordering;

use serde::Serialize;
use serde::ser;
use serde_json::Error;

use super::Writer;
use super::key::KeyWriter;
use crate::canonical::escape::write_string;
use crate::canonical::refusal::Step;
use crate::canonical::sort::{Member, key_order, scan_members};

/// An object being written: its members as they come, put in key order at the end if they did not
/// come in it. In order (a `serde_json::Value` of a plain build, a struct whose fields are declared
/// in order), nothing is recorded but the last key.
pub(in crate::canonical) struct Object<'w, 'o> {
    w: &'w mut Writer<'o>,
    /// Where its `{` is in `out`.
    start: usize,
    /// The members written so far.
    count: usize,
    /// The last member written.
    last: Option<Member>,
    /// The member whose key was written and whose value comes next: (start, key end, escaped).
    pending: Option<(usize, usize, bool)>,
    /// A member came with a key not after the one before it.
    unsorted: bool,
    /// Inside `{"variant":…}`: closed with `}}`.
    variant: Option<&'static str>,
}

impl<'w, 'o> Object<'w, 'o> {
    /// Begins an object (the writer has entered its level, or both levels of a variant).
    pub(super) fn begin(w: &'w mut Writer<'o>, variant: Option<&'static str>) -> Self {
        let start = w.out.len();
        w.out.push(b'{');
        Object {
            w,
            start,
            count: 0,
            last: None,
            pending: None,
            unsorted: false,
            variant,
        }
    }

    /// Before a member's key: its separator; returns where the member starts.
    fn member_start(&mut self) -> usize {
        if self.count > 0 {
            self.w.out.push(b',');
        }
        self.w.out.len()
    }

    /// On the way up from a refused member of a variant's object: the variant's step.
    fn variant_step(&mut self) {
        if let Some(variant) = self.variant {
            self.w.step(|| Step::Key(variant.to_owned()));
        }
    }

    /// After a member's value.
    fn member_end(&mut self, start: usize, key_end: usize, escaped: bool) {
        let member = Member {
            start,
            key_end,
            end: self.w.out.len(),
            escaped,
        };
        if !self.unsorted
            && let Some(last) = &self.last
            && key_order(self.w.out, last, &member) != Ordering::Less
        {
            self.unsorted = true;
        }
        self.last = Some(member);
        self.count += 1;
    }

    pub(super) fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), Error> {
        let start = self.member_start();
        let escaped = write_string(self.w.out, key);
        let key_end = self.w.out.len();
        self.w.out.push(b':');
        if let Err(e) = value.serialize(&mut *self.w) {
            self.w.step(|| Step::Key(key.to_owned()));
            self.variant_step();
            return Err(e);
        }
        self.member_end(start, key_end, escaped);
        self.w.check_len()
    }

    pub(super) fn finish(self) -> Result<(), Error> {
        let out = &mut *self.w.out;
        if self.unsorted {
            let mut members = Vec::with_capacity(self.count);
            scan_members(out, self.start, &mut members);
            debug_assert_eq!(members.len(), self.count);
            // Stable: of members with equal keys, the last given is last, and kept.
            members.sort_by(|a, b| key_order(out, a, b));
            // The sorted object is written after the unsorted one, then moved in its place.
            let sorted = out.len();
            out.push(b'{');
            for (i, m) in members.iter().enumerate() {
                if members
                    .get(i + 1)
                    .is_some_and(|next| key_order(out, m, next) == Ordering::Equal)
                {
                    continue;
                }
                if out.len() > sorted + 1 {
                    out.push(b',');
                }
                out.extend_from_within(m.start..m.end);
            }
            out.push(b'}');
            out.copy_within(sorted.., self.start);
            out.truncate(self.start + (out.len() - sorted));
        } else {
            out.push(b'}');
        }
        if self.variant.is_some() {
            out.push(b'}');
            self.w.leave(2);
        } else {
            self.w.leave(1);
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let start = self.member_start();
        let mut escaped = false;
        key.serialize(KeyWriter {
            out: &mut *self.w.out,
            escaped: &mut escaped,
        })?;
        self.pending = Some((start, self.w.out.len(), escaped));
        self.w.out.push(b':');
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let (start, key_end, escaped) = self
            .pending
            .take()
            .expect("serialize_value called before serialize_key");
        if let Err(e) = value.serialize(&mut *self.w) {
            let key = &self.w.out[start + 1..key_end - 1];
            let key = String::from_utf8_lossy(key).into_owned();
            self.w.step(|| Step::Key(key));
            return Err(e);
        }
        self.member_end(start, key_end, escaped);
        self.w.check_len()
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Object<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}
