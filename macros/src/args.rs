//! Parsing of `#[agent_action(...)]`: every option, each value checked for its own shape. Rules that
//! relate several options or the function's signature are in `check.rs`.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprPath, Ident, Lit, LitInt, LitStr, Path, Token};

use crate::duration;
use crate::errors::Errors;
use crate::template::Template;

/// Every option, in the order of the documentation (used in the "expected one of" message).
pub const OPTIONS: &[&str] = &[
    "name",
    "effect",
    "key",
    "record",
    "retries",
    "max_elapsed",
    "backoff",
    "jitter",
    "dedup",
    "cycle",
    "lease",
    "on_transient",
    "on_validation",
    "on_conflict",
    "on_security",
    "owner",
    "expert",
    "compensate",
    "approve",
    "approval_expires",
    "tool",
    "crate",
];

/// The largest `retries` accepted.
pub const MAX_RETRIES: u64 = 100;

/// A written option: its value, where its name and value are, and the value as written (messages echo
/// what the user wrote: `"24h"`, not a normalized `"1d"`).
pub struct Opt<T> {
    pub value: T,
    pub name_span: Span,
    pub value_span: Span,
    pub written: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Read,
    Write,
    Destructive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    Full,
    Equal,
    Decorrelated,
    None,
}

/// Mirrors `actguard::Route`, whose spelling (`route_owner`) the attribute uses.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Retry,
    RouteOwner,
    Escalate,
    DeadLetter,
    Halt,
}

/// `compensate = path::to::action` (checked to resolve; its action name is the last segment) or
/// `compensate = "action name"` (for a compensating action that sets its own `name`).
pub enum Compensate {
    Path(Path),
    Name(String),
}

/// `backoff = "base..cap"`, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct BackoffRange {
    pub base_ms: u64,
    pub cap_ms: u64,
}

/// The options as written. `None` means "left to its default".
#[derive(Default)]
pub struct Args {
    pub name: Option<Opt<String>>,
    pub effect: Option<Opt<Effect>>,
    pub key: Option<Opt<Template>>,
    pub record: Option<Opt<Template>>,
    pub retries: Option<Opt<u32>>,
    pub max_elapsed: Option<Opt<u64>>,
    pub backoff: Option<Opt<BackoffRange>>,
    pub jitter: Option<Opt<Jitter>>,
    /// `Some(None)` is `dedup = "none"`.
    pub dedup: Option<Opt<Option<u64>>>,
    pub cycle: Option<Opt<u64>>,
    pub lease: Option<Opt<u64>>,
    pub on_transient: Option<Opt<Route>>,
    pub on_validation: Option<Opt<Route>>,
    pub on_conflict: Option<Opt<Route>>,
    pub on_security: Option<Opt<Route>>,
    pub owner: Option<Opt<String>>,
    pub expert: Option<Opt<String>>,
    pub compensate: Option<Opt<Compensate>>,
    /// The approvers' queue.
    pub approve: Option<Opt<String>>,
    pub approval_expires: Option<Opt<u64>>,
    /// `tool` (`None`: the description is the doc comment) or `tool = "description"`.
    pub tool: Option<Opt<Option<String>>>,
    pub krate: Option<Opt<Path>>,
    /// Names of the policy options written, in order (`crate` is not one).
    pub explicit: Vec<&'static str>,
    /// Names of every option written, valid or not, in order: the duplicate check.
    written: Vec<&'static str>,
}

impl Args {
    /// Parses the attribute's arguments. Every malformed option is reported (into `errors`); the
    /// well-formed ones are kept so later checks can still run.
    pub fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
        let mut args = Args::default();
        let parser = syn::meta::parser(|meta| {
            let name = match meta.path.get_ident() {
                Some(ident) => ident.unraw().to_string(),
                None => {
                    errors.push(unknown_option(&meta.path, &quote_path(&meta.path)));
                    skip_value(&meta)?;
                    return Ok(());
                }
            };
            let Some(&option) = OPTIONS.iter().find(|o| **o == name) else {
                errors.push(unknown_option(&meta.path, &name));
                skip_value(&meta)?;
                return Ok(());
            };
            if option == "tool"
                && !meta.input.peek(Token![=])
                && !meta.input.peek(syn::token::Paren)
            {
                args.set_flag(option, meta.path.span(), errors);
                return Ok(());
            }
            if !meta.input.peek(Token![=]) {
                errors.push(syn::Error::new(
                    meta.path.span(),
                    format!("option `{option}` needs a value: write `{option} = ...`"),
                ));
                skip_value(&meta)?;
                return Ok(());
            }
            let value: Expr = meta.value()?.parse()?;
            args.set(option, meta.path.span(), &value, errors);
            Ok(())
        });
        if let Err(e) = parser.parse2(tokens) {
            errors.push(e);
        }
        args.explicit = args
            .written
            .iter()
            .copied()
            .filter(|o| *o != "crate")
            .collect();
        args
    }

    /// Stores one option, parsed by its own value parser; `set_once` is the one place that rejects
    /// duplicates.
    fn set(&mut self, option: &'static str, name_span: Span, value: &Expr, errors: &mut Errors) {
        let written = &mut self.written;
        macro_rules! set {
            ($field:ident, $parse:expr) => {
                set_once(
                    &mut self.$field,
                    written,
                    option,
                    name_span,
                    value,
                    errors,
                    $parse,
                )
            };
        }
        match option {
            "name" => set!(name, name_value),
            "effect" => set!(effect, effect_value),
            "key" => set!(key, template_value),
            "record" => set!(record, template_value),
            "retries" => set!(retries, retries_value),
            "max_elapsed" => set!(max_elapsed, duration_value),
            "backoff" => set!(backoff, backoff_value),
            "jitter" => set!(jitter, jitter_value),
            "dedup" => set!(dedup, dedup_value),
            "cycle" => set!(cycle, duration_value),
            "lease" => set!(lease, duration_value),
            "on_transient" => set!(on_transient, route_value),
            "on_validation" => set!(on_validation, route_value),
            "on_conflict" => set!(on_conflict, route_value),
            "on_security" => set!(on_security, route_value),
            "owner" => set!(owner, queue_value),
            "expert" => set!(expert, queue_value),
            "compensate" => set!(compensate, compensate_value),
            "approve" => set!(approve, queue_value),
            "approval_expires" => set!(approval_expires, duration_value),
            "tool" => set!(tool, tool_value),
            "crate" => set!(krate, crate_value),
            _ => unreachable!("`{option}` is in OPTIONS but has no parser"),
        }
    }
}

impl Args {
    /// `tool` written alone: a tool described by the function's doc comment.
    fn set_flag(&mut self, option: &'static str, name_span: Span, errors: &mut Errors) {
        if self.written.contains(&option) {
            errors.push(syn::Error::new(
                name_span,
                format!("duplicate option `{option}`: each option may be written only once"),
            ));
            return;
        }
        self.written.push(option);
        self.tool = Some(Opt {
            value: None,
            name_span,
            value_span: name_span,
            written: String::new(),
        });
    }
}

/// `tool = "what it does, for the model"`.
fn tool_value(option: &str, value: &Expr) -> syn::Result<Option<String>> {
    let lit = lit_str(option, value, "\"Posts an invoice to the ledger\"")?;
    let text = lit.value();
    if text.trim().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            "`tool` needs a description for the model: write `tool = \"what it does\"`, or `tool` alone with a doc comment on the function",
        ));
    }
    Ok(Some(text))
}

/// Sets `slot` from `value` unless the option was written before, valid or not (reported on the
/// second name).
fn set_once<T>(
    slot: &mut Option<Opt<T>>,
    written: &mut Vec<&'static str>,
    option: &'static str,
    name_span: Span,
    value: &Expr,
    errors: &mut Errors,
    parse: fn(&str, &Expr) -> syn::Result<T>,
) {
    if written.contains(&option) {
        errors.push(syn::Error::new(
            name_span,
            format!("duplicate option `{option}`: each option may be written only once"),
        ));
        return;
    }
    written.push(option);
    match parse(option, value) {
        Ok(parsed) => {
            *slot = Some(Opt {
                value: parsed,
                name_span,
                value_span: value.span(),
                written: quote::quote!(#value).to_string(),
            })
        }
        Err(e) => errors.push(e),
    }
}

fn unknown_option(path: &Path, name: &str) -> syn::Error {
    let hint = closest(name)
        .map(|o| format!(" (did you mean `{o}`?)"))
        .unwrap_or_default();
    syn::Error::new(
        path.span(),
        format!(
            "unknown option `{name}`{hint}; expected one of: {}",
            OPTIONS.join(", ")
        ),
    )
}

fn quote_path(path: &Path) -> String {
    quote::quote!(#path).to_string().replace(' ', "")
}

/// Consumes `= value` or `(...)` after an option that is being rejected, so parsing can go on.
fn skip_value(meta: &syn::meta::ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _group: proc_macro2::Group = meta.input.parse()?;
    }
    Ok(())
}

/// The option closest to a misspelled one, if close enough to be a likely typo (`retry` → `retries`).
fn closest(name: &str) -> Option<&'static str> {
    let shared_prefix = |o: &str| {
        name.chars()
            .zip(o.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    OPTIONS
        .iter()
        .map(|o| (strsim::levenshtein(name, o), *o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 4) || shared_prefix(o) >= 4)
        .min_by_key(|(d, o)| (*d, usize::MAX - shared_prefix(o)))
        .map(|(_, o)| o)
}

fn lit_str(option: &str, value: &Expr, example: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        _ => Err(syn::Error::new(
            value.span(),
            format!("`{option}` expects a string literal, e.g. `{option} = {example}`"),
        )),
    }
}

/// A bare identifier among `choices` (`effect = write`); a quoted one gets a hint.
fn bare_ident(option: &str, value: &Expr, choices: &[&str]) -> syn::Result<(String, Span)> {
    let expected = choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match value {
        Expr::Path(ExprPath {
            path, qself: None, ..
        }) if path.get_ident().is_some() => {
            let ident = path
                .get_ident()
                .map(Ident::unraw)
                .unwrap_or_else(|| unreachable!());
            let text = ident.to_string();
            if choices.contains(&text.as_str()) {
                Ok((text, ident.span()))
            } else {
                Err(syn::Error::new(
                    ident.span(),
                    format!("`{text}` is not a valid `{option}`; expected one of: {expected}"),
                ))
            }
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if choices.contains(&s.value().as_str()) => Err(syn::Error::new(
            s.span(),
            format!(
                "write `{option} = {}` without quotes: it is a keyword, not a string",
                s.value()
            ),
        )),
        _ => Err(syn::Error::new(
            value.span(),
            format!("`{option}` expects one of: {expected}"),
        )),
    }
}

fn name_value(option: &str, value: &Expr) -> syn::Result<String> {
    let lit = lit_str(option, value, "\"disburse\"")?;
    let name = lit.value();
    if name.trim().is_empty() || name.trim() != name {
        return Err(syn::Error::new(
            lit.span(),
            "an action name cannot be empty or start or end with whitespace: it is used in keys, logs and manifests",
        ));
    }
    Ok(name)
}

fn effect_value(option: &str, value: &Expr) -> syn::Result<Effect> {
    let (text, _) = bare_ident(option, value, &["write", "read", "destructive"])?;
    Ok(match text.as_str() {
        "read" => Effect::Read,
        "destructive" => Effect::Destructive,
        _ => Effect::Write,
    })
}

fn template_value(option: &str, value: &Expr) -> syn::Result<Template> {
    let lit = lit_str(option, value, "\"disburse:{instr.loan_id}\"")?;
    Template::parse(&lit, option)
}

fn retries_value(option: &str, value: &Expr) -> syn::Result<u32> {
    let lit: &LitInt = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i,
        _ => {
            return Err(syn::Error::new(
                value.span(),
                format!(
                    "`{option}` expects a whole number from 0 to {MAX_RETRIES}, e.g. `retries = 5`"
                ),
            ));
        }
    };
    let n: u64 = lit.base10_parse()?;
    if n > MAX_RETRIES {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "`retries = {n}` is more than {MAX_RETRIES}: retries must be bounded; a failure that survives \
                 {MAX_RETRIES} retries belongs in the dead-letter queue, not in a longer loop"
            ),
        ));
    }
    Ok(n as u32)
}

fn duration_lit(lit: &LitStr, option: &str) -> syn::Result<u64> {
    duration::parse(&lit.value()).map_err(|msg| {
        syn::Error::new(
            lit.span(),
            format!("malformed duration in `{option}`: {msg}"),
        )
    })
}

fn duration_value(option: &str, value: &Expr) -> syn::Result<u64> {
    let lit = lit_str(option, value, "\"5m\"")?;
    duration_lit(&lit, option)
}

fn dedup_value(option: &str, value: &Expr) -> syn::Result<Option<u64>> {
    if let Expr::Path(p) = value {
        if p.path.is_ident("none") {
            return Ok(None);
        }
    }
    let lit = lit_str(option, value, "\"24h\"` or `dedup = \"none\"")?;
    if lit.value() == "none" {
        return Ok(None);
    }
    duration_lit(&lit, option).map(Some)
}

fn backoff_value(option: &str, value: &Expr) -> syn::Result<BackoffRange> {
    let lit = lit_str(option, value, "\"100ms..30s\"")?;
    let text = lit.value();
    let Some((base, cap)) = text.split_once("..") else {
        return Err(syn::Error::new(
            lit.span(),
            format!("malformed backoff `{text}`: write `base..cap`, e.g. \"100ms..30s\""),
        ));
    };
    let base_ms = duration_lit(&LitStr::new(base, lit.span()), option)?;
    let cap_ms = duration_lit(&LitStr::new(cap, lit.span()), option)?;
    if base_ms == 0 || base_ms > cap_ms {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "malformed backoff `{text}`: the base must be more than zero and not longer than the cap"
            ),
        ));
    }
    Ok(BackoffRange { base_ms, cap_ms })
}

fn jitter_value(option: &str, value: &Expr) -> syn::Result<Jitter> {
    let (text, _) = bare_ident(option, value, &["full", "equal", "decorrelated", "none"])?;
    Ok(match text.as_str() {
        "equal" => Jitter::Equal,
        "decorrelated" => Jitter::Decorrelated,
        "none" => Jitter::None,
        _ => Jitter::Full,
    })
}

fn route_value(option: &str, value: &Expr) -> syn::Result<Route> {
    let (text, _) = bare_ident(
        option,
        value,
        &["retry", "route_owner", "escalate", "dead_letter", "halt"],
    )?;
    Ok(match text.as_str() {
        "retry" => Route::Retry,
        "route_owner" => Route::RouteOwner,
        "escalate" => Route::Escalate,
        "dead_letter" => Route::DeadLetter,
        _ => Route::Halt,
    })
}

fn queue_value(option: &str, value: &Expr) -> syn::Result<String> {
    let lit = lit_str(option, value, "\"loan-ops\"")?;
    if lit.value().trim().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{option}` names a review queue and cannot be empty"),
        ));
    }
    Ok(lit.value())
}

fn compensate_value(option: &str, value: &Expr) -> syn::Result<Compensate> {
    match value {
        Expr::Path(ExprPath {
            path, qself: None, ..
        }) => Ok(Compensate::Path(path.clone())),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if !s.value().trim().is_empty() => Ok(Compensate::Name(s.value())),
        _ => Err(syn::Error::new(
            value.span(),
            format!(
                "`{option}` expects the path of another #[agent_action] fn, e.g. `{option} = refund`, \
                 or its action name, e.g. `{option} = \"loan.refund\"`"
            ),
        )),
    }
}

fn crate_value(option: &str, value: &Expr) -> syn::Result<Path> {
    let lit = lit_str(option, value, "\"::my_crate::actguard\"")?;
    lit.parse_with(Path::parse_mod_style).map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("`{option}` expects the path under which actguard is re-exported, e.g. \"::my_crate::actguard\""),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: TokenStream) -> (Args, Option<syn::Error>) {
        let mut errors = Errors::default();
        let args = Args::parse(tokens, &mut errors);
        (args, errors.finish(()).err())
    }

    #[test]
    fn suggests_the_option_a_typo_meant() {
        assert_eq!(closest("retry"), Some("retries"));
        assert_eq!(closest("max_elapse"), Some("max_elapsed"));
        assert_eq!(closest("on_validaton"), Some("on_validation"));
        assert_eq!(closest("colour"), None);
    }

    #[test]
    fn records_the_written_options_in_order() {
        let (args, error) = parse(quote::quote!(retries = 5, key = "k:{id}", dedup = none));
        assert!(error.is_none());
        assert_eq!(args.explicit, ["retries", "key", "dedup"]);
        assert_eq!(args.retries.map(|r| r.value), Some(5));
        assert!(matches!(args.dedup.map(|d| d.value), Some(None)));
    }

    #[test]
    fn reports_every_malformed_option_and_keeps_the_rest() {
        let (args, error) = parse(quote::quote!(
            retries = 101,
            lease = "5 min",
            retries = 1,
            jitter = "full",
            backoff = "1s..30s"
        ));
        let messages: Vec<String> = error.unwrap().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(messages[0].contains("more than 100"));
        assert!(messages[1].contains("malformed duration in `lease`"));
        assert!(messages[2].contains("duplicate option `retries`"));
        assert!(messages[3].contains("without quotes"));
        let backoff = args.backoff.unwrap().value;
        assert_eq!((backoff.base_ms, backoff.cap_ms), (1_000, 30_000));
    }
}
