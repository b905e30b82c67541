//! Nothing inside a `Redacted` may reach a key or a record: keys and records are stored, logged and
//! shown in clear. Two layers: the attribute rejects a template part that reads a parameter declared
//! `Redacted<..>` (a message that names the parameter), and the expansion checks the type of every
//! value a template part reads on its way (`card`, `card.pan`, `order.card.pan`), which catches a
//! `Redacted` field nested in a struct or named through a type alias.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote_spanned};
use syn::{Ident, Type};

use crate::check::Payload;
use crate::errors::Errors;
use crate::template::{Segment, Template};

/// Rejects every part of `template` whose parameter is declared `Redacted<..>` (or `&Redacted<..>`,
/// `actguard::Redacted<..>`), with the error on the template.
pub fn check_template(template: &Template, payload: &[Payload], errors: &mut Errors) {
    for segment in &template.segments {
        let Segment::Part { root, fields } = segment else {
            continue;
        };
        let Some(param) = payload.iter().find(|p| p.ident == root) else {
            continue;
        };
        if !is_redacted(&param.ty) {
            continue;
        }
        let part = std::iter::once(root.as_str())
            .chain(fields.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(".");
        errors.push(syn::Error::new(
            template.lit.span(),
            format!(
                "`{{{part}}}` reads `{root}`, a `Redacted` parameter: a key or record cannot hold \
                 anything of a `Redacted` value. Keys and records are stored, logged and shown in clear \
                 (the store, the action log, queue entries, tracing spans, `KeyReused` errors), while \
                 a `Redacted` value is stored only as a keyed digest. Build the template from a \
                 non-secret identifier instead (an id or a reference of the `{root}` record, as its own \
                 parameter or field), and keep `{root}` in the payload"
            ),
        ));
    }
}

/// `Redacted<..>`, behind any references, parentheses or invisible groups, by any path ending in it.
fn is_redacted(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => is_redacted(&r.elem),
        Type::Paren(p) => is_redacted(&p.elem),
        Type::Group(g) => is_redacted(&g.elem),
        Type::Path(path) => {
            path.qself.is_none()
                && path
                    .path
                    .segments
                    .last()
                    .is_some_and(|last| last.ident == "Redacted" && !last.arguments.is_empty())
        }
        _ => false,
    }
}

/// A statement checking, in a closure that is never called, that no value a part of `template` reads
/// (each prefix of its field path) is or reaches a `Redacted`; every token is spanned on the template,
/// so the error is reported there.
pub fn type_checks(template: &Template, private: &TokenStream) -> TokenStream {
    let span = template.lit.span();
    let p = respan(private.clone(), span);
    let mut checks = Vec::new();
    for segment in &template.segments {
        let Segment::Part { root, fields } = segment else {
            continue;
        };
        let mut access = Ident::new(root, span).into_token_stream();
        checks.push(probe(&access, &p, span));
        for field in fields {
            // As in `Template::render`: no fix-it that would replace the whole literal.
            let member = member(field, span.resolved_at(Span::mixed_site()));
            access = quote_spanned!(span=> #access.#member);
            checks.push(probe(&access, &p, span));
        }
    }
    if checks.is_empty() {
        return TokenStream::new();
    }
    quote_spanned! {span=>
        let _ = || {
            #[allow(unused_imports)]
            use #p::{PlainTemplateValue as _, RedactedTemplateValue as _};
            #(#checks)*
        };
    }
}

fn probe(access: &TokenStream, p: &TokenStream, span: Span) -> TokenStream {
    quote_spanned! {span=>
        #p::template_value_not_redacted((&#p::TemplateProbe(&(#access))).template_value());
    }
}

fn member(field: &str, span: Span) -> syn::Member {
    match field.parse::<u32>() {
        Ok(index) => syn::Member::Unnamed(syn::Index { index, span }),
        Err(_) => syn::Member::Named(Ident::new(field, span)),
    }
}

/// `tokens` with every span (recursively) set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = proc_macro2::TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_types_are_recognized_behind_references_and_paths() {
        for ty in [
            "Redacted<Card>",
            "&Redacted<Card>",
            "&'a mut Redacted<String>",
            "actguard::Redacted<Card>",
            "&::actguard::Redacted<(u8, u8)>",
            "(Redacted<u8>)",
        ] {
            assert!(is_redacted(&syn::parse_str(ty).unwrap()), "{ty}");
        }
        for ty in [
            "Card",
            "&Card",
            "Redacted",
            "Vec<Redacted<u8>>",
            "NotRedacted<u8>",
        ] {
            assert!(!is_redacted(&syn::parse_str(ty).unwrap()), "{ty}");
        }
    }

    #[test]
    fn every_prefix_of_a_part_is_checked() {
        let lit: syn::LitStr = syn::parse_quote!("pay:{order.card.pan}:{id}");
        let template = Template::parse(&lit, "key").unwrap();
        let checks = type_checks(&template, &quote::quote!(::actguard::__private)).to_string();
        for access in [
            "(& (order))",
            "(& (order . card))",
            "(& (order . card . pan))",
            "(& (id))",
        ] {
            assert!(checks.contains(access), "{access} in {checks}");
        }
        let literal: syn::LitStr = syn::parse_quote!("fixed");
        let none = Template::parse(&literal, "key").unwrap();
        assert!(type_checks(&none, &quote::quote!(::actguard::__private)).is_empty());
    }
}
