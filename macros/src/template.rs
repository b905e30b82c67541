//! Key and record templates: literal text and `{param}` / `{param.field.path}` parts, `{{` and `}}`
//! for literal braces.
//!
//! A template renders injectively: two different tuples of parts never give the same text. With one
//! part, the literal text around it is fixed, so any part text is fine. With two or more, the
//! runtime percent-encodes `%` and every character of the literal text between parts inside each
//! part's text ([`Template::escape_set`]); the template must then have literal text between any two
//! parts (`{a}{b}` has no boundary to find), and that text may not begin with `%` (an escape could
//! then end where the separator begins: `{a}%{b}` renders `%25%25` for both `("", "25%")` and
//! `("%", "25")`).

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{Ident, LitStr};

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text copied as is.
    Literal(String),
    /// A parameter (`root`) and the fields read from it, each a name or a tuple index.
    Part { root: String, fields: Vec<String> },
}

/// A parsed template, with the literal it came from (for spans).
#[derive(Clone)]
pub struct Template {
    pub lit: LitStr,
    pub segments: Vec<Segment>,
}

impl Template {
    /// Parses a template; the error message says what is wrong, spanned on the literal.
    pub fn parse(lit: &LitStr, option: &str) -> syn::Result<Template> {
        let segments = parse_segments(&lit.value())
            .map_err(|msg| syn::Error::new(lit.span(), format!("`{option}` template: {msg}")))?;
        Ok(Template {
            lit: lit.clone(),
            segments,
        })
    }

    /// The parameters the template reads, in order.
    pub fn roots(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Part { root, .. } => Some(root.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The characters the runtime percent-encodes in each part: `%` and every character of the
    /// literal text between parts, in order of first appearance. `None` for a template with fewer
    /// than two parts (nothing to escape).
    pub fn escape_set(&self) -> Option<String> {
        escape_set(&self.segments)
    }

    /// `KeyBuilder::new(action).escaping(..).literal(..).part(&param.field)...finish()`. Every part
    /// expression is spanned on the template literal, so an unknown field or a part without a
    /// stable encoding is reported there.
    /// `builder`: the `KeyBuilder` constructor, `new` for a key, `record` for a record (no digest).
    pub fn render(&self, private: &TokenStream, action: &str, builder: &str) -> TokenStream {
        let span = self.lit.span();
        let builder = Ident::new(builder, Span::call_site());
        let escaping = self.escape_set().map(|set| quote!(.escaping(#set)));
        let calls = self.segments.iter().map(|segment| match segment {
            Segment::Literal(text) => quote!(.literal(#text)),
            Segment::Part { root, fields } => {
                let root = Ident::new(root, span);
                // Located on the literal, with the macro's hygiene: rustc then reports an unknown
                // field there but offers no fix-it, whose replacement would be the whole literal
                // (`key = seq`, not a template).
                let field_span = span.resolved_at(Span::mixed_site());
                let fields = fields.iter().map(|f| member(f, field_span));
                let mut access = root.into_token_stream();
                for field in fields {
                    access = quote_spanned_dot(access, field, span);
                }
                quote::quote_spanned!(span=> .part(&(#access)))
            }
        });
        quote! {
            #private::KeyBuilder::#builder(#action) #escaping #(#calls)* .finish()
        }
    }
}

fn quote_spanned_dot(base: TokenStream, field: syn::Member, span: Span) -> TokenStream {
    quote::quote_spanned!(span=> #base.#field)
}

fn member(field: &str, span: Span) -> syn::Member {
    match field.parse::<u32>() {
        Ok(index) => syn::Member::Unnamed(syn::Index { index, span }),
        Err(_) => syn::Member::Named(Ident::new(field, span)),
    }
}

/// See [`Template::escape_set`].
fn escape_set(segments: &[Segment]) -> Option<String> {
    let is_part = |s: &Segment| matches!(s, Segment::Part { .. });
    let first = segments.iter().position(is_part)?;
    let last = segments.iter().rposition(is_part)?;
    if first == last {
        return None;
    }
    let mut set = String::from("%");
    for segment in &segments[first..last] {
        if let Segment::Literal(text) = segment {
            for c in text.chars() {
                if !set.contains(c) {
                    set.push(c);
                }
            }
        }
    }
    Some(set)
}

/// The text of a part as the template spells it, for messages.
fn spelled(segment: &Segment) -> String {
    match segment {
        Segment::Part { root, fields } => {
            let mut path = root.clone();
            for f in fields {
                path.push('.');
                path.push_str(f);
            }
            format!("{{{path}}}")
        }
        Segment::Literal(text) => text.clone(),
    }
}

/// Between any two parts, literal text that does not begin with `%`: what makes the rendered text
/// injective (see the module's documentation).
fn check_separators(segments: &[Segment]) -> Result<(), String> {
    let is_part = |s: &Segment| matches!(s, Segment::Part { .. });
    for (i, segment) in segments.iter().enumerate() {
        // Literal text is merged: what follows a literal is a part, or nothing.
        let part_follows = segments.get(i + 1).is_some_and(is_part);
        match segment {
            Segment::Part { .. } if part_follows => {
                let (a, b) = (spelled(segment), spelled(&segments[i + 1]));
                return Err(format!(
                    "`{a}{b}` has no text between its parts, so different values render the same text (`\"ab\" + \"c\"` and `\"a\" + \"bc\"` are both `abc`): put a separator between them, e.g. `{a}:{b}`"
                ));
            }
            Segment::Literal(text) if text.starts_with('%') && i > 0 && part_follows => {
                let before = spelled(&segments[i - 1]);
                return Err(format!(
                    "the text after `{before}` begins with `%`, the escape character of key parts, so different values could render the same text: begin the separator with another character, e.g. `:{text}`"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_segments(text: &str) -> Result<Vec<Segment>, String> {
    if text.is_empty() {
        return Err("a template cannot be empty: write the literal text and `{param}` parts that identify one intent, e.g. \"disburse:{instr.loan_id}:{instr.seq}\"".into());
    }
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if matches!(chars.peek(), Some((_, '{'))) => {
                chars.next();
                literal.push('{');
            }
            '}' if matches!(chars.peek(), Some((_, '}'))) => {
                chars.next();
                literal.push('}');
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` after `{}`: write `}}}}` for a literal brace",
                    &text[..at]
                ));
            }
            '{' => {
                let rest = &text[at + 1..];
                let Some(len) = rest
                    .find(['{', '}'])
                    .filter(|&i| rest[i..].starts_with('}'))
                else {
                    return Err(format!(
                        "unclosed `{{` after `{}`: close the part with `}}`, or write `{{{{` for a literal brace",
                        &text[..at]
                    ));
                };
                let inner = &rest[..len];
                for _ in 0..=len {
                    chars.next();
                }
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(parse_part(inner)?);
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    check_separators(&segments)?;
    Ok(segments)
}

fn parse_part(inner: &str) -> Result<Segment, String> {
    if inner.trim().is_empty() {
        return Err(
            "empty `{}`: name a parameter or a field path of one, e.g. `{instr.loan_id}`".into(),
        );
    }
    let mut path = inner.split('.');
    let root = path.next().unwrap_or_default();
    if !is_ident(root) {
        return Err(format!(
            "`{{{inner}}}` is not a parameter or a field path of one: write `{{param}}` or `{{param.field}}`"
        ));
    }
    let mut fields = Vec::new();
    for field in path {
        if !is_ident(field) && !is_index(field) {
            return Err(format!(
                "`{{{inner}}}` is not a parameter or a field path of one: `{field}` is not a field name or a tuple index"
            ));
        }
        fields.push(field.to_owned());
    }
    Ok(Segment::Part {
        root: root.to_owned(),
        fields,
    })
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    let well_formed = matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric());
    // `self` is a keyword but a valid root (methods); other keywords and `_` are not names.
    well_formed && (s == "self" || syn::parse_str::<Ident>(s).is_ok())
}

fn is_index(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(root: &str, fields: &[&str]) -> Segment {
        Segment::Part {
            root: root.into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn literals_parts_and_field_paths() {
        assert_eq!(
            parse_segments("disburse:{instr.loan_id}:{instr.seq}").unwrap(),
            vec![
                Segment::Literal("disburse:".into()),
                part("instr", &["loan_id"]),
                Segment::Literal(":".into()),
                part("instr", &["seq"]),
            ]
        );
        assert_eq!(parse_segments("{id}").unwrap(), vec![part("id", &[])]);
        assert_eq!(
            parse_segments("{pair.0.name}").unwrap(),
            vec![part("pair", &["0", "name"])]
        );
        assert_eq!(
            parse_segments("{self.tenant}").unwrap(),
            vec![part("self", &["tenant"])]
        );
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(
            parse_segments("{{x}}:{id}").unwrap(),
            vec![Segment::Literal("{x}:".into()), part("id", &[])]
        );
    }

    #[test]
    fn escapes_the_separators_of_two_or_more_parts() {
        let set = |t: &str| escape_set(&parse_segments(t).unwrap());
        assert_eq!(set("pay:{a}:{b}"), Some("%:".into()));
        assert_eq!(set("{a}/{b}::{c}-x"), Some("%/:".into()));
        assert_eq!(set("{a}→{b}"), Some("%→".into()));
        // The literal text before the first part and after the last is fixed: not escaped.
        assert_eq!(set("x/{a}-{b}/y"), Some("%-".into()));
        // One part, or none: nothing to escape.
        assert_eq!(set("pay:{a}:"), None);
        assert_eq!(set("{a}"), None);
        assert_eq!(set("{{a}}"), None);
        // A separator may hold `%` after its first character.
        assert_eq!(set("{a}:%{b}"), Some("%:".into()));
    }

    #[test]
    fn parts_need_a_separator_that_does_not_begin_with_percent() {
        let err = parse_segments("pay:{a}{b.c}").unwrap_err();
        assert!(
            err.starts_with("`{a}{b.c}` has no text between its parts")
                && err.contains("`{a}:{b.c}`"),
            "{err}"
        );
        assert!(parse_segments("{a}{{x}}{b}").is_ok());
        let err = parse_segments("{a}%{b}").unwrap_err();
        assert!(err.contains("begins with `%`"), "{err}");
        assert!(parse_segments("{a}%").is_ok());
        assert!(parse_segments("%{a}").is_ok());
    }

    proptest::proptest! {
        /// The parser answers every text, however malformed, without panicking.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,40}") {
            let _ = parse_segments(&text);
        }

        /// Texts made of the characters templates are made of.
        #[test]
        fn any_template_like_text_parses_or_is_refused(text in "[{}.:%a_0-9é ]{0,24}") {
            if let Ok(segments) = parse_segments(&text) {
                // A template that parses renders injectively: a separator between any two parts.
                for pair in segments.windows(2) {
                    proptest::prop_assert!(
                        !matches!(pair, [Segment::Part { .. }, Segment::Part { .. }]),
                        "{:?}", segments
                    );
                }
                let _ = escape_set(&segments);
            }
        }
    }

    #[test]
    fn rejects_malformed_templates() {
        for bad in [
            "", "{}", "{ }", "{a", "a}", "{a.}", "{.a}", "{a-b}", "{a.b c}", "{{a}", "{a{b}}",
            "{1}", "{a.01}",
        ] {
            assert!(parse_segments(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
