//! `#[derive(Classify)]`: every variant says what kind of failure it is, in code.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Lit, LitInt, LitStr, Member, Path, Token};

use crate::errors::Errors;

const KINDS: &[&str] = &["transient", "validation", "conflict", "security", "from"];

/// What one variant (or the struct) is.
enum Kind {
    Fixed {
        kind: Ident,
        retry_after: Option<Member>,
    },
    From,
}

/// The parsed `#[classify(...)]` attributes of one variant or of the container.
#[derive(Default)]
struct Attr {
    /// Whether a `#[classify]` attribute was malformed (already reported: no "missing" error too).
    malformed: bool,
    kind: Option<(String, Span)>,
    retry_after: Option<Member>,
    krate: Option<Path>,
}

fn parse_attrs(attrs: &[syn::Attribute], container: bool, errors: &mut Errors) -> Attr {
    let mut out = Attr::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("classify")) {
        let result = attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            let Some(ident) = meta.path.get_ident().map(|i| i.to_string()) else {
                return Err(meta.error(unknown_kind("this")));
            };
            if let Some(kind) = KINDS.iter().find(|k| **k == ident) {
                if let Some((previous, _)) = &out.kind {
                    errors.push(syn::Error::new(
                        span,
                        format!("a failure has exactly one kind: this one is already `{previous}`"),
                    ));
                } else {
                    out.kind = Some((kind.to_string(), span));
                }
            } else if ident == "retry_after" {
                let value = meta.value()?;
                let member: Member = if value.peek(syn::LitInt) {
                    let lit: LitInt = value.parse()?;
                    Member::Unnamed(syn::Index {
                        index: lit.base10_parse()?,
                        span: lit.span(),
                    })
                } else {
                    Member::Named(value.parse()?)
                };
                if out.retry_after.replace(member).is_some() {
                    errors.push(syn::Error::new(span, "duplicate `retry_after`"));
                }
            } else if ident == "crate" && container {
                let value = meta.value()?;
                let lit: LitStr = value.parse()?;
                out.krate = Some(lit.parse_with(Path::parse_mod_style)?);
            } else {
                // Consume a value, if any, so the message is about the name only.
                if meta.input.peek(Token![=]) {
                    let _: Lit = meta.value()?.parse()?;
                }
                out.malformed = true;
                errors.push(syn::Error::new(span, unknown_kind(&ident)));
            }
            Ok(())
        });
        if let Err(e) = result {
            out.malformed = true;
            errors.push(e);
        }
    }
    out
}

fn unknown_kind(name: &str) -> String {
    format!(
        "unknown classification `{name}`; expected one of: transient, validation, conflict, security, \
         from (delegate to the single field), optionally with `retry_after = field` on transient"
    )
}

/// Turns the parsed attribute into a kind, checking `retry_after` against the fields.
fn kind_of(
    attr: Attr,
    fields: &Fields,
    what: &str,
    missing_span: Span,
    errors: &mut Errors,
) -> Option<Kind> {
    let Some((kind, kind_span)) = attr.kind else {
        if attr.malformed {
            return None;
        }
        errors.push(syn::Error::new(
            missing_span,
            format!(
                "{what} has no classification: add `#[classify(transient)]`, `#[classify(validation)]`, \
                 `#[classify(conflict)]`, `#[classify(security)]` or `#[classify(from)]`, so every failure \
                 has a route"
            ),
        ));
        return None;
    };
    if kind == "from" {
        if fields.len() != 1 {
            errors.push(syn::Error::new(
                kind_span,
                format!(
                    "`#[classify(from)]` delegates to the single field, but {what} has {} fields",
                    fields.len()
                ),
            ));
            return None;
        }
        if let Some(member) = attr.retry_after {
            errors.push(syn::Error::new(
                member.span(),
                "`retry_after` is taken from the delegate with `#[classify(from)]`",
            ));
            return None;
        }
        return Some(Kind::From);
    }
    if let Some(member) = &attr.retry_after {
        if kind != "transient" {
            errors.push(syn::Error::new(
                member.span(),
                "`retry_after` only applies to `transient` failures: only they are retried",
            ));
            return None;
        }
        let exists = fields
            .iter()
            .enumerate()
            .any(|(i, f)| match (member, &f.ident) {
                (Member::Named(name), Some(ident)) => name == ident,
                (Member::Unnamed(index), None) => index.index as usize == i,
                _ => false,
            });
        if !exists {
            let hint = match fields {
                Fields::Unnamed(_) => "name a field by its index, e.g. `retry_after = 0`",
                _ => "name one of its fields, of type `Duration` or `Option<Duration>`",
            };
            errors.push(syn::Error::new(
                member.span(),
                format!("{what} has no field `{}`: {hint}", member_text(member)),
            ));
            return None;
        }
    }
    Some(Kind::Fixed {
        kind: Ident::new(&kind, kind_span),
        retry_after: attr.retry_after,
    })
}

fn member_text(member: &Member) -> String {
    match member {
        Member::Named(i) => i.to_string(),
        Member::Unnamed(i) => i.index.to_string(),
    }
}

pub fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let container = parse_attrs(&input.attrs, true, &mut errors);
    let krate = container
        .krate
        .as_ref()
        .map_or_else(|| quote!(::actguard), |k| quote!(#k));
    let p = quote!(#krate::__private);
    let name = &input.ident;

    // (pattern prefix, fields, kind) per arm.
    let mut arms = Vec::new();
    match &input.data {
        Data::Enum(data) => {
            if let Some((_, span)) = &container.kind {
                errors.push(syn::Error::new(
                    *span,
                    "on an enum, put `#[classify(...)]` on each variant",
                ));
            }
            for variant in &data.variants {
                let attr = parse_attrs(&variant.attrs, false, &mut errors);
                let ident = &variant.ident;
                let what = format!("variant `{ident}`");
                if let Some(kind) = kind_of(attr, &variant.fields, &what, ident.span(), &mut errors)
                {
                    arms.push((quote!(Self::#ident), &variant.fields, kind));
                }
            }
        }
        Data::Struct(data) => {
            let what = format!("`{name}`");
            let attr = Attr {
                malformed: container.malformed,
                kind: container.kind,
                retry_after: container.retry_after,
                krate: None,
            };
            if let Some(kind) = kind_of(attr, &data.fields, &what, name.span(), &mut errors) {
                arms.push((quote!(Self), &data.fields, kind));
            }
        }
        Data::Union(u) => errors.push(syn::Error::new(
            u.union_token.span(),
            "`Classify` can be derived for an enum or a struct, not a union",
        )),
    }
    errors.finish(())?;

    let mut classify_arms = Vec::new();
    let mut retry_arms = Vec::new();
    let mut note_arms = Vec::new();
    let mut delegate_types = Vec::new();
    for (path, fields, kind) in arms {
        match kind {
            Kind::Fixed { kind, retry_after } => {
                let variant =
                    format_ident!("{}", capitalize(&kind.to_string()), span = kind.span());
                classify_arms.push(quote!(#path { .. } => #p::FailureKind::#variant));
                if let Some(member) = retry_after {
                    let field = fields
                        .iter()
                        .enumerate()
                        .find(|(i, f)| match (&member, &f.ident) {
                            (Member::Named(n), Some(id)) => n == id,
                            (Member::Unnamed(x), None) => x.index as usize == *i,
                            _ => false,
                        })
                        .map(|(_, f)| f);
                    let span = field.map_or(member.span(), |f| f.ty.span());
                    retry_arms.push(quote_spanned! {span=>
                        #path { #member: __classify_value, .. } =>
                            #p::retry_after_field(__classify_value)
                    });
                }
            }
            Kind::From => {
                let field = fields.iter().next().expect("checked: exactly one field");
                let member = field
                    .ident
                    .clone()
                    .map_or(Member::Unnamed(syn::Index::from(0)), Member::Named);
                let span = field.ty.span();
                delegate_types.push(field.ty.clone());
                classify_arms.push(quote_spanned! {span=>
                    #path { #member: __classify_inner, .. } => #p::delegate_classify(__classify_inner)
                });
                retry_arms.push(quote_spanned! {span=>
                    #path { #member: __classify_inner, .. } => {
                        #[allow(unused_imports)]
                        use #p::{DelegateRetryAfter as _, NoDelegateRetryAfter as _};
                        (&#p::DelegateProbe(__classify_inner)).delegate_retry_after()
                    }
                });
                note_arms.push(quote_spanned! {span=>
                    #path { #member: __classify_inner, .. } => {
                        #[allow(unused_imports)]
                        use #p::{DelegateNote as _, NoDelegateNote as _};
                        (&#p::DelegateProbe(__classify_inner)).delegate_note()
                    }
                });
            }
        }
    }

    let mut generics = input.generics.clone();
    if !generics.params.is_empty() && !delegate_types.is_empty() {
        let where_clause = generics.make_where_clause();
        for ty in &delegate_types {
            where_clause
                .predicates
                .push(syn::parse_quote!(#ty: #p::Classify));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let fallback = (retry_arms.len() < classify_arms.len())
        .then(|| quote!(_ => ::core::option::Option::None,));
    // Only delegates have notes: without one, the trait's default (`None`) stands.
    let note = (!note_arms.is_empty()).then(|| {
        let fallback = (note_arms.len() < classify_arms.len())
            .then(|| quote!(_ => ::core::option::Option::None,));
        quote! {
            fn note(&self) -> ::core::option::Option<#p::Cow<'static, str>> {
                #[allow(unreachable_patterns)]
                match self {
                    #(#note_arms,)*
                    #fallback
                }
            }
        }
    });
    // An empty enum has no value to classify: `match *self {}` proves it to the compiler.
    let scrutinee = if classify_arms.is_empty() {
        quote!(*self)
    } else {
        quote!(self)
    };
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #p::Classify for #name #ty_generics #where_clause {
            fn classify(&self) -> #p::FailureKind {
                match #scrutinee {
                    #(#classify_arms,)*
                }
            }

            fn retry_after(&self) -> ::core::option::Option<#p::Duration> {
                #[allow(unreachable_patterns)]
                match #scrutinee {
                    #(#retry_arms,)*
                    #fallback
                }
            }

            #note
        }
    })
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
