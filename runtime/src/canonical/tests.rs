//! Tests of canonical JSON: its bytes against `serde_json`'s and release 0.1's, escapes, key
//! order, numbers, keys, limits and refusals.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde::ser::{SerializeMap, SerializeStruct};
use serde_json::json;

use super::escape::needs_escape;
use super::number::write_number_text;
use super::probe::numbers_keep_their_text;
use super::ser::{NUMBER_TOKEN, RAW_VALUE_TOKEN};
use super::*;
use crate::limits::LimitError;

/// These tests compare with `serde_json` itself where it is the reference: a plain build (this
/// workspace's), whose `Map` is sorted and whose numbers are binary.
fn assert_plain_serde_json() {
    let mut map = serde_json::Map::new();
    map.insert("b".into(), json!(1));
    map.insert("a".into(), json!(2));
    assert_eq!(
        map.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "serde_json is built with preserve_order"
    );
    assert!(
        !numbers_keep_their_text(),
        "serde_json is built with arbitrary_precision"
    );
}

/// What release 0.1 wrote for `value`: the plain build's bytes of its `serde_json::Value`.
fn via_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(&serde_json::to_value(value)?)
}

fn canonical(value: &impl Serialize) -> String {
    to_string(value).unwrap()
}

#[test]
fn needs_escape_finds_what_serde_json_escapes() {
    for b in 0u8..=255 {
        for at in [0, 3, 8, 13, 17] {
            let mut bytes = b"abcdefghijklmnopqrs".to_vec();
            bytes[at] = b;
            let escaped = b < 0x20 || b == b'"' || b == b'\\';
            assert_eq!(needs_escape(&bytes), escaped, "byte {b:#x} at {at}");
        }
    }
    assert!(!needs_escape(b""));
    assert!(!needs_escape("clé:é€".as_bytes()));
}

/// The escapes, spelled out: every control character, the quote and the backslash; U+007F and
/// non-ASCII characters as they are.
#[test]
fn strings_escape_exactly_quote_backslash_and_control_characters() {
    let all: String = (0u8..0x20).map(char::from).collect();
    assert_eq!(
        canonical(&all),
        "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\
         \\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\
         \\u001b\\u001c\\u001d\\u001e\\u001f\""
    );
    assert_eq!(
        canonical(&"a\"b\\c/d\u{7f}é日本🦀\u{2028}"),
        "\"a\\\"b\\\\c/d\u{7f}é日本🦀\u{2028}\""
    );
    assert_eq!(canonical(&'"'), "\"\\\"\"");
    for b in 0u8..=0x7f {
        let s = format!("x{}y", char::from(b));
        assert_eq!(canonical(&s), serde_json::to_string(&s).unwrap(), "{b:#x}");
    }
}

/// Floats, spelled out: these bytes are in stored fingerprints.
#[test]
fn floats_are_written_as_release_0_1_wrote_them() {
    for (f, text) in [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-0.0, "-0.0"),
        (100.0, "100.0"),
        (1e-5, "0.00001"),
        (1.5e-5, "0.000015"),
        (1e-6, "1e-6"),
        (0.0001, "0.0001"),
        (1e-7, "1e-7"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e+16"),
        (1e21, "1e+21"),
        (123456.789, "123456.789"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (f64::NAN, "null"),
        (f64::INFINITY, "null"),
        (f64::NEG_INFINITY, "null"),
    ] {
        assert_eq!(canonical(&f), text, "{f:?}");
    }
    // An f32 is widened to an f64, as `serde_json::to_value` does.
    assert_eq!(canonical(&0.1f32), "0.10000000149011612");
    assert_eq!(canonical(&f32::NAN), "null");
    assert_eq!(canonical(&16777217.0f32), "16777216.0");
}

#[test]
fn integers_are_written_in_decimal_and_128_bit_ones_must_fit_64_bits() {
    assert_eq!(canonical(&u64::MAX), "18446744073709551615");
    assert_eq!(canonical(&i64::MIN), "-9223372036854775808");
    assert_eq!(canonical(&u128::from(u64::MAX)), "18446744073709551615");
    assert_eq!(canonical(&i128::from(i64::MIN)), "-9223372036854775808");
    assert_eq!(canonical(&(-1i8, 0u8, 255u8)), "[-1,0,255]");
    for bad in [
        to_vec(&(u128::from(u64::MAX) + 1)),
        to_vec(&(i128::from(i64::MIN) - 1)),
    ] {
        assert_eq!(bad.unwrap_err().to_string(), "number out of range");
    }
    assert_plain_serde_json();
    assert!(serde_json::to_value(u128::from(u64::MAX) + 1).is_err());
}

/// Keys are sorted by their UTF-8 bytes, compared unescaped: not RFC 8785's UTF-16 order.
#[test]
fn keys_sort_by_their_utf8_bytes() {
    let map: HashMap<&str, u8> = [
        ("\u{1f600}", 1),
        ("\u{ff61}", 2),
        ("a#", 3),
        ("a\"", 4),
        ("a", 5),
        ("a\n", 6),
        ("Z", 7),
        ("", 8),
        ("\u{1}", 9),
        ("é", 10),
        ("a\\", 11),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        canonical(&map),
        "{\"\":8,\"\\u0001\":9,\"Z\":7,\"a\":5,\"a\\n\":6,\"a\\\"\":4,\"a#\":3,\"a\\\\\":11,\
         \"é\":10,\"\u{ff61}\":2,\"\u{1f600}\":1}"
    );
}

#[derive(Serialize)]
struct Inner {
    zeta: f32,
    alpha: Option<String>,
    #[serde(rename = "mid\"dle")]
    middle: Vec<u8>,
}

#[derive(Serialize)]
enum Shape {
    Point,
    Circle(f64),
    Pair(i32, i32),
    Rect { w: u32, h: u32, a: () },
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Meters(f64);

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Zebra,
    Apple,
}

#[derive(Serialize)]
struct Outer {
    z: Inner,
    shapes: Vec<Shape>,
    b: BTreeMap<i64, Unit>,
    flags: BTreeMap<bool, char>,
    kinds: BTreeMap<Kind, Meters>,
    keys: BTreeMap<char, (u8, Option<bool>)>,
    #[serde(with = "serde_bytes_like")]
    raw: Vec<u8>,
    a: HashMap<u16, i128>,
}

mod serde_bytes_like {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

fn outer() -> Outer {
    Outer {
        z: Inner {
            zeta: 0.1,
            alpha: None,
            middle: vec![1, 2],
        },
        shapes: vec![
            Shape::Point,
            Shape::Circle(1e21),
            Shape::Pair(-1, 2),
            Shape::Rect { w: 3, h: 4, a: () },
        ],
        b: [(-1, Unit), (10, Unit), (2, Unit)].into_iter().collect(),
        flags: [(true, 'x'), (false, '"')].into_iter().collect(),
        kinds: [(Kind::Zebra, Meters(2.5)), (Kind::Apple, Meters(-0.0))]
            .into_iter()
            .collect(),
        keys: [('b', (1, None)), ('a', (2, Some(true)))]
            .into_iter()
            .collect(),
        raw: vec![0, 255],
        a: [(443, i128::from(i64::MIN)), (22, 7)].into_iter().collect(),
    }
}

/// A struct is written as its `serde_json::Value` was: fields sorted at every level, maps with
/// non-string keys as `serde_json` keys them, enums externally tagged, bytes as an array.
#[test]
fn a_typed_value_is_written_as_its_json_value_was() {
    let expected = concat!(
        r#"{"a":{"22":7,"443":-9223372036854775808},"b":{"-1":null,"10":null,"2":null},"#,
        r#""flags":{"false":"\"","true":"x"},"keys":{"a":[2,true],"b":[1,null]},"#,
        r#""kinds":{"Apple":-0.0,"Zebra":2.5},"raw":[0,255],"#,
        r#""shapes":["Point",{"Circle":1e+21},{"Pair":[-1,2]},{"Rect":{"a":null,"h":4,"w":3}}],"#,
        r#""z":{"alpha":null,"mid\"dle":[1,2],"zeta":0.10000000149011612}}"#
    );
    assert_eq!(canonical(&outer()), expected);
    assert_plain_serde_json();
    assert_eq!(
        String::from_utf8(via_value(&outer()).unwrap()).unwrap(),
        expected
    );
}

/// Float keys as `serde_json` writes them (an f32 key as an f32); non-finite ones refused.
#[test]
fn float_keys_are_written_as_serde_json_keys_them() {
    struct FloatKeys;
    impl Serialize for FloatKeys {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            m.serialize_entry(&0.1f32, &1)?;
            m.serialize_entry(&1e21f64, &2)?;
            m.end()
        }
    }
    assert_eq!(canonical(&FloatKeys), r#"{"0.1":1,"1e+21":2}"#);
    assert_plain_serde_json();
    assert_eq!(
        String::from_utf8(via_value(&FloatKeys).unwrap()).unwrap(),
        canonical(&FloatKeys)
    );
    let nan: BTreeMap<String, u8> = BTreeMap::new();
    assert_eq!(canonical(&nan), "{}");
    struct NanKey;
    impl Serialize for NanKey {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            m.serialize_entry(&f64::NAN, &1)?;
            m.end()
        }
    }
    assert!(to_vec(&NanKey).is_err());
    let seq_key: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into_iter().collect();
    assert_eq!(
        to_vec(&seq_key).unwrap_err().to_string(),
        "key must be a string"
    );
    assert!(serde_json::to_value(&seq_key).is_err());
}

/// A key given twice keeps its last value, in its sorted place, as a `Map` insert does.
#[test]
fn a_repeated_key_keeps_its_last_value() {
    struct Repeated;
    impl Serialize for Repeated {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("b", &1)?;
            m.serialize_entry("a", &2)?;
            m.serialize_entry("b", &3)?;
            m.serialize_entry("c", &4)?;
            m.serialize_entry("a", &5)?;
            m.end()
        }
    }
    assert_eq!(canonical(&Repeated), r#"{"a":5,"b":3,"c":4}"#);
    assert_plain_serde_json();
    assert_eq!(
        String::from_utf8(via_value(&Repeated).unwrap()).unwrap(),
        canonical(&Repeated)
    );
}

/// `serde_json`'s private form of a number under `arbitrary_precision`: its text, written as a
/// plain build would have read it.
struct NumberText(&'static str);

impl Serialize for NumberText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct(NUMBER_TOKEN, 1)?;
        st.serialize_field(NUMBER_TOKEN, self.0)?;
        st.end()
    }
}

#[test]
fn a_number_kept_as_text_is_written_as_a_plain_build_reads_it() {
    let cases = [
        ("0", "0"),
        ("7", "7"),
        ("1.50", "1.5"),
        ("1e3", "1000.0"),
        ("1E3", "1000.0"),
        ("1e+3", "1000.0"),
        ("-0", "-0.0"),
        ("-0.0", "-0.0"),
        ("0.1", "0.1"),
        ("0.10000000149011612", "0.10000000149011612"),
        ("1e21", "1e+21"),
        ("1e+21", "1e+21"),
        ("18446744073709551615", "18446744073709551615"),
        ("18446744073709551616", "1.8446744073709552e+19"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("-9223372036854775809", "-9.223372036854776e+18"),
        ("123456789012345678901234567890", "1.2345678901234568e+29"),
        ("2.5e-324", "5e-324"),
        ("5e-324", "5e-324"),
    ];
    assert_plain_serde_json();
    for (text, expected) in cases {
        assert_eq!(canonical(&NumberText(text)), expected, "{text}");
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(plain.to_string(), expected, "a plain build reads {text}");
    }
    // Out of a plain build's range: a plain build refuses to read it; infinite, so `null`.
    assert_eq!(canonical(&NumberText("1e400")), "null");
    assert!(serde_json::from_str::<Value>("1e400").is_err());
    assert!(to_vec(&NumberText("x")).is_err());
    // Inside an object, sorted like any other value.
    let mut m = BTreeMap::new();
    m.insert("b", NumberText("1.50"));
    m.insert("a", NumberText("-0"));
    assert_eq!(canonical(&m), r#"{"a":-0.0,"b":1.5}"#);
}

/// `serde_json`'s private form of raw JSON (`raw_value` feature): parsed and written canonically.
#[test]
fn raw_json_is_written_canonically() {
    struct Raw(&'static str);
    impl Serialize for Raw {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct(RAW_VALUE_TOKEN, 1)?;
            st.serialize_field(RAW_VALUE_TOKEN, self.0)?;
            st.end()
        }
    }
    assert_eq!(
        canonical(&vec![Raw(r#" { "b" : [1.50, 1e21], "a" : "\u00e9" } "#)]),
        r#"[{"a":"é","b":[1.5,1e+21]}]"#
    );
    assert!(to_vec(&Raw("{")).is_err());
}

/// A value whose serialization writes canonical JSON itself (a `Redacted` inside a payload).
#[test]
fn a_canonical_write_inside_another_one_leaves_it_intact() {
    struct Digest(BTreeMap<&'static str, u8>);
    impl Serialize for Digest {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&to_string(&self.0).unwrap())
        }
    }
    #[derive(Serialize)]
    struct Outer {
        z: u8,
        d: Digest,
        a: Vec<BTreeMap<&'static str, u8>>,
    }
    let o = Outer {
        z: 1,
        d: Digest([("y", 1), ("x", 2)].into_iter().collect()),
        a: vec![[("q", 1), ("p", 2)].into_iter().collect()],
    };
    assert_eq!(
        canonical(&o),
        r#"{"a":[{"p":2,"q":1}],"d":"{\"x\":2,\"y\":1}","z":1}"#
    );
}

#[test]
fn to_value_is_serde_json_to_value_in_a_plain_build() {
    assert_plain_serde_json();
    let v = to_value(&outer()).unwrap();
    assert_eq!(v, serde_json::to_value(outer()).unwrap());
    assert_eq!(to_vec(&v).unwrap(), to_vec(&outer()).unwrap());
    assert!(to_value(&(u128::from(u64::MAX) + 1)).is_err());
}

/// Arrays nested `.0` levels deep around `null`, serialized lazily: no structure in memory, so any
/// depth can be asked for.
struct Deep(usize);

impl Serialize for Deep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        if self.0 == 0 {
            return s.serialize_unit();
        }
        let mut seq = s.serialize_seq(Some(1))?;
        seq.serialize_element(&Deep(self.0 - 1))?;
        seq.end()
    }
}

fn limited(value: &impl Serialize, limits: Limits) -> Result<String, Unstorable> {
    let mut out = Vec::new();
    write_limited(&mut out, value, limits, "root", || "the value".to_owned())?;
    Ok(String::from_utf8(out).unwrap())
}

const SMALL: Limits = Limits {
    max_depth: 3,
    max_bytes: 64,
    kind: "result",
};

fn refusal(value: &impl Serialize, limits: Limits) -> LimitError {
    match limited(value, limits) {
        Err(Unstorable::Refused(e)) => e,
        other => panic!("not refused: {other:?}"),
    }
}

/// Every container counts one level, a variant with data two (`{"V":[` and `{"V":{`), a
/// newtype variant one; the value's serialization is not followed past the limit.
#[test]
fn a_limited_write_counts_every_level_and_stops_at_the_limit() {
    assert_eq!(limited(&Deep(3), SMALL).unwrap(), "[[[null]]]");
    assert_eq!(
        refusal(&Deep(4), SMALL),
        LimitError::TooDeep {
            what: "the value".into(),
            path: "root[0][0][0]".into(),
            max: 3
        }
    );
    // A long path shows its ends.
    assert_eq!(
        refusal(&Deep(100), Limits::RESULT),
        LimitError::TooDeep {
            what: "the value".into(),
            path: format!("root{}…{}", "[0]".repeat(8), "[0]".repeat(8)),
            max: 64
        }
    );
    // However deep the value: the write stops at the limit (no stack is spent below it).
    assert!(matches!(
        refusal(&Deep(100_000), SMALL),
        LimitError::TooDeep { max: 3, .. }
    ));
    assert!(matches!(
        refusal(&Deep(100_000), Limits::RESULT),
        LimitError::TooDeep { max: 64, .. }
    ));
    assert!(limited(&Deep(64), Limits::RESULT).is_ok());
    assert!(limited(&vec![vec![Shape::Pair(1, 2)]], SMALL).is_err());
    assert!(limited(&vec![Shape::Pair(1, 2)], SMALL).is_ok());
    assert!(limited(&vec![vec![Shape::Circle(1.0)]], SMALL).is_ok());
    assert!(limited(&vec![vec![vec![Shape::Circle(1.0)]]], SMALL).is_err());
    assert!(limited(&vec![vec![Shape::Rect { w: 1, h: 2, a: () }]], SMALL).is_err());
    assert!(limited(&vec![vec![b"ab".as_slice()]], SMALL).is_ok());
    // The default write stops too, at the depth serde_json reads.
    assert!(to_vec(&Deep(MAX_WRITE_DEPTH)).is_ok());
    assert!(to_vec(&Deep(100_000)).is_err());
}

/// A refusal names where it is: keys and indexes from the root, a key that is not a plain name
/// quoted.
#[test]
fn a_refusal_names_the_path_to_the_value() {
    #[derive(Serialize)]
    struct Line {
        price: f64,
    }
    #[derive(Serialize)]
    struct Order {
        id: u32,
        lines: Vec<Line>,
    }
    let order = Order {
        id: 1,
        lines: vec![Line { price: 1.0 }, Line { price: f64::NAN }],
    };
    assert_eq!(
        refusal(&order, Limits::RESULT),
        LimitError::NonFinite {
            what: "the value".into(),
            path: "root.lines[1].price".into(),
            value: "NaN"
        }
    );
    let map: BTreeMap<&str, Vec<f32>> = [("a b", vec![0.5, f32::NEG_INFINITY])].into();
    assert_eq!(
        refusal(&map, Limits::RESULT),
        LimitError::NonFinite {
            what: "the value".into(),
            path: r#"root["a b"][1]"#.into(),
            value: "-inf"
        }
    );
    assert!(matches!(
        refusal(&Shape::Circle(f64::INFINITY), Limits::RESULT),
        LimitError::NonFinite { value: "inf", ref path, .. } if path == "root.Circle"
    ));
    // The default write keeps the form's `null` for them.
    assert_eq!(canonical(&f64::NAN), "null");
}

#[test]
fn a_limited_write_refuses_output_over_the_size() {
    let fits = "x".repeat(62);
    assert_eq!(limited(&fits, SMALL).unwrap().len(), 64);
    assert_eq!(
        refusal(&"x".repeat(63), SMALL),
        LimitError::TooLarge {
            what: "the value".into(),
            kind: "result",
            max: 64
        }
    );
    // A long sequence stops at the first element past the size, not at its end.
    assert!(matches!(
        refusal(&vec![7u8; 1_000_000], SMALL),
        LimitError::TooLarge { .. }
    ));
}

/// A value whose `Serialize` drops the error of a refused part is refused all the same.
#[test]
fn a_swallowed_refusal_still_refuses() {
    struct Careless;
    impl Serialize for Careless {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(None)?;
            let _ = seq.serialize_element(&f64::NAN);
            seq.end()
        }
    }
    assert!(matches!(
        refusal(&Careless, Limits::RESULT),
        LimitError::NonFinite { .. }
    ));
}

/// Any JSON value: keys of every kind (escapes, unicode), numbers of every kind.
fn any_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        "[a-c]{0,3}",
        "[a\"\\\\#\u{1}\n\u{7f}é\u{ff61}\u{1f600}]{0,3}",
        any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(|bits| Value::from(f64::from_bits(bits))),
        any::<f64>().prop_map(Value::from),
        any::<f32>().prop_map(|f| Value::from(f64::from(f))),
        any::<String>().prop_map(Value::from),
        "[{}\\[\\],:\"\\\\\u{1}a]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Every JSON value is written as a plain `serde_json` build writes it, through `serde` or by
    /// walking the value.
    #[test]
    fn any_json_value_is_written_as_plain_serde_json_writes_it(v in any_value()) {
        assert_plain_serde_json();
        let expected = serde_json::to_vec(&v).unwrap();
        prop_assert_eq!(&to_vec(&v).unwrap(), &expected);
        let mut walked = Vec::new();
        write_value(&mut walked, &v);
        prop_assert_eq!(walked, expected);
    }

    /// Every float is written as `serde_json` writes it.
    #[test]
    fn any_float_is_written_as_serde_json_writes_it(bits in any::<u64>(), f in any::<f32>()) {
        let f64_value = f64::from_bits(bits);
        prop_assert_eq!(to_vec(&f64_value).unwrap(), serde_json::to_vec(&f64_value).unwrap());
        prop_assert_eq!(to_vec(&f).unwrap(), via_value(&f).unwrap());
        // As the text of a number (arbitrary_precision), it reads back the same.
        if f64_value.is_finite() {
            let text = serde_json::to_string(&f64_value).unwrap();
            let mut out = Vec::new();
            write_number_text(&mut out, &text).unwrap();
            prop_assert_eq!(out, text.into_bytes());
        }
    }

    /// Objects whose members come in reverse order, at every level, with any content (strings
    /// holding brackets, commas, quotes, escapes): found again and sorted.
    #[test]
    fn members_in_any_order_are_sorted_at_every_level(v in any_value()) {
        struct Reversed<'a>(&'a Value);
        impl Serialize for Reversed<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                match self.0 {
                    Value::Object(m) => {
                        let mut map = s.serialize_map(Some(m.len()))?;
                        for (k, v) in m.iter().rev() {
                            map.serialize_entry(k, &Reversed(v))?;
                        }
                        map.end()
                    }
                    Value::Array(a) => {
                        let mut seq = s.serialize_seq(Some(a.len()))?;
                        for v in a {
                            seq.serialize_element(&Reversed(v))?;
                        }
                        seq.end()
                    }
                    other => other.serialize(s),
                }
            }
        }
        assert_plain_serde_json();
        prop_assert_eq!(to_vec(&Reversed(&v)).unwrap(), serde_json::to_vec(&v).unwrap());
    }

    /// A map with keys in any order and of any content is written as its sorted `Value` is.
    #[test]
    fn any_map_is_written_as_its_json_value(
        members in prop::collection::vec((any::<String>(), any::<i32>()), 0..12),
    ) {
        let members: Vec<(String, i32)> = members;
        struct InOrder<'a>(&'a [(String, i32)]);
        impl Serialize for InOrder<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        assert_plain_serde_json();
        prop_assert_eq!(to_vec(&InOrder(&members)).unwrap(), via_value(&InOrder(&members)).unwrap());
    }
}
