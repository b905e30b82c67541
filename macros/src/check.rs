//! Meaning-level rules: what the options say together, and what the function's signature must be.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type, TypePath};

use crate::args::{Args, Compensate, Effect, Route};
use crate::errors::Errors;
use crate::template::Template;

/// The default `dedup` window (24h), for the `dedup` vs `cycle` rule; the runtime's `Policy::DEFAULT`
/// holds the same value.
const DEFAULT_DEDUP_MS: u64 = 24 * 3_600_000;

/// A payload parameter: stored by name, so its pattern is a plain identifier.
pub struct Payload {
    pub ident: Ident,
    pub ty: Type,
}

/// A `#[dep]` parameter: a client or handle, not part of the payload.
pub struct Dep {
    pub name: String,
    pub ty: Type,
}

/// An action that passed every check: everything the expansion needs.
pub struct Action {
    pub args: Args,
    pub name: String,
    pub fn_name: String,
    pub effect: Effect,
    pub run: Ident,
    pub payload: Vec<Payload>,
    pub deps: Vec<Dep>,
    pub ok_ty: Type,
    pub err_ty: Type,
    pub compensate_name: Option<String>,
    /// The description of the tool the action is exported as (`tool`), if it is one.
    pub tool: Option<String>,
}

/// Removes the `#[dep]` markers from the signature (they are not real attributes) and returns which
/// parameters carried one. Done before any check, so the function emitted on error compiles too.
pub fn strip_dep_markers(func: &mut ItemFn) -> Vec<bool> {
    func.sig
        .inputs
        .iter_mut()
        .map(|arg| match arg {
            FnArg::Typed(pat) => {
                let before = pat.attrs.len();
                pat.attrs.retain(|a| !a.path().is_ident("dep"));
                pat.attrs.len() != before
            }
            FnArg::Receiver(_) => false,
        })
        .collect()
}

/// Checks `args` against each other and against `func`; every violation goes into `errors`.
pub fn check(args: Args, func: &ItemFn, is_dep: &[bool], errors: &mut Errors) -> Option<Action> {
    let sig = &func.sig;
    let fn_name = sig.ident.unraw().to_string();

    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span(),
            "#[agent_action] must be on an `async fn`: the guarded call awaits the store before and after the body",
        ));
    }

    let result = result_types(&sig.output, &sig.ident);
    if let Err(e) = &result {
        errors.push(e.clone());
    }

    // Parameters: the run handle, `self`, `#[dep]`s, and the payload.
    let mut run: Option<Ident> = None;
    let mut has_self = false;
    let mut payload = Vec::new();
    let mut deps = Vec::new();
    // A parameter rejected below may be the one a template names: then "unknown parameter" would
    // only repeat that error.
    let mut rejected_param = false;
    for (arg, &dep) in sig.inputs.iter().zip(is_dep) {
        let typed = match arg {
            FnArg::Receiver(_) => {
                has_self = true;
                continue;
            }
            FnArg::Typed(typed) => typed,
        };
        let ident = match &*typed.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(p.ident.clone()),
            _ => None,
        };
        if dep {
            let pat = &typed.pat;
            deps.push(Dep {
                name: ident.as_ref().map_or_else(
                    || quote::quote!(#pat).to_string(),
                    |i| i.unraw().to_string(),
                ),
                ty: (*typed.ty).clone(),
            });
        } else if is_run_type(&typed.ty) {
            match (ident, &run) {
                (_, Some(_)) => errors.push(syn::Error::new(
                    typed.span(),
                    "an #[agent_action] takes exactly one run parameter (`run: &Run`)",
                )),
                (None, None) => {
                    rejected_param = true;
                    errors.push(syn::Error::new(
                        typed.pat.span(),
                        "the run parameter must be a plain name, e.g. `run: &Run`: the body sees the current attempt through it",
                    ))
                }
                (Some(ident), None) => run = Some(ident),
            }
        } else {
            match ident {
                Some(ident) => payload.push(Payload {
                    ident,
                    ty: (*typed.ty).clone(),
                }),
                None => {
                    rejected_param = true;
                    errors.push(syn::Error::new(
                    typed.pat.span(),
                    "a payload parameter must be a plain name: the payload is stored by parameter name (mark clients and handles `#[dep]`)",
                ))
                }
            }
        }
    }
    if run.is_none() && !rejected_param {
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "an #[agent_action] needs a run parameter, e.g. `run: &Run`: every action runs as part of a run",
        ));
    }

    let effect = args.effect.as_ref().map_or(Effect::Write, |e| e.value);
    check_key(&args, effect, errors);
    let params = Params {
        has_self,
        run: &run,
        payload: &payload,
        deps: &deps,
        fn_name: &fn_name,
        rejected_param,
    };
    for template in [&args.key, &args.record].into_iter().flatten() {
        check_template_roots(&template.value, &params, errors);
        crate::secret::check_template(&template.value, &payload, errors);
    }
    check_windows(&args, errors);
    check_dedup_record(&args, effect, errors);
    check_routes(&args, errors);

    if effect == Effect::Destructive && !args.explicit.contains(&"compensate") {
        let span = args
            .effect
            .as_ref()
            .map_or_else(Span::call_site, |e| e.value_span);
        errors.push(syn::Error::new(
            span,
            "a `destructive` action must declare `compensate = <action>`: the action that reverses it, run by revert",
        ));
    }

    check_param_names(func, has_self, errors);
    let tool = check_tool(&args, func, has_self, errors);
    check_approval(&args, effect, errors);

    let (ok_ty, err_ty) = result.ok()?;
    let run = run?;
    if !errors.is_empty() {
        return None;
    }
    let name = args
        .name
        .as_ref()
        .map_or_else(|| fn_name.clone(), |n| n.value.clone());
    let compensate_name = args.compensate.as_ref().and_then(|c| match &c.value {
        Compensate::Path(path) => path.segments.last().map(|s| s.ident.unraw().to_string()),
        Compensate::Name(name) => Some(name.clone()),
    });
    Some(Action {
        args,
        name,
        fn_name,
        effect,
        run,
        payload,
        deps,
        ok_ty,
        err_ty,
        compensate_name,
        tool,
    })
}

/// A free function is called by name from stored data (replay, revert, tools): a parameter with the
/// function's own name would hide it there.
fn check_param_names(func: &ItemFn, has_self: bool, errors: &mut Errors) {
    let sig = &func.sig;
    if has_self || !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return;
    }
    for arg in &sig.inputs {
        let FnArg::Typed(typed) = arg else { continue };
        if let Pat::Ident(p) = &*typed.pat {
            if p.ident == sig.ident {
                errors.push(syn::Error::new(
                    p.ident.span(),
                    format!(
                        "a parameter cannot be named `{0}` like its function: replay, revert and tools call `{0}` by name, and the parameter would hide it; rename the parameter",
                        sig.ident
                    ),
                ));
            }
        }
    }
}

/// `approve` gates an action that acts (not a `read`); `approval_expires` needs `approve`.
fn check_approval(args: &Args, effect: Effect, errors: &mut Errors) {
    if let (Some(approve), Effect::Read) = (&args.approve, effect) {
        errors.push(syn::Error::new(
            approve.name_span,
            "`approve` gates an action that acts: a `read` changes nothing, so there is nothing to approve",
        ));
    }
    if let (Some(expires), None) = (&args.approval_expires, &args.approve) {
        errors.push(syn::Error::new(
            expires.name_span,
            "`approval_expires` needs `approve = \"queue\"`: it bounds how long an approval may wait to be used",
        ));
    }
    if let Some(expires) = &args.approval_expires {
        if expires.value == 0 {
            errors.push(syn::Error::new(
                expires.value_span,
                "`approval_expires` must be longer than zero: an approval that expires at once can never be used",
            ));
        }
    }
}

/// A tool is called by name with JSON arguments: a free, non-generic function, with a description
/// for the model (`tool = "..."`, else the doc comment). Answers the description.
fn check_tool(args: &Args, func: &ItemFn, has_self: bool, errors: &mut Errors) -> Option<String> {
    let tool = args.tool.as_ref()?;
    let generic = !func.sig.generics.params.is_empty() || func.sig.generics.where_clause.is_some();
    if has_self || generic {
        errors.push(syn::Error::new(
            tool.name_span,
            "a tool is called by name with JSON arguments: it must be a free, non-generic function (not a method, no type parameters)",
        ));
        return None;
    }
    let description = match &tool.value {
        Some(text) => text.clone(),
        None => doc_comment(func),
    };
    if description.is_empty() {
        errors.push(syn::Error::new(
            tool.name_span,
            "a tool needs a description for the model: write a doc comment on the function, or `tool = \"what it does\"`",
        ));
        return None;
    }
    Some(description)
}

/// The function's doc comment, its lines trimmed and joined (paragraphs kept apart by a blank line).
fn doc_comment(func: &ItemFn) -> String {
    let lines: Vec<String> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// `T` and `E` of `-> Result<T, E>`.
fn result_types(output: &ReturnType, fn_name: &Ident) -> syn::Result<(Type, Type)> {
    let ty = match output {
        ReturnType::Type(_, ty) => ty,
        ReturnType::Default => {
            return Err(syn::Error::new(
                fn_name.span(),
                "an #[agent_action] must return `Result<T, E>`: `T` is stored for replay and `E: Classify` decides where a failure goes",
            ));
        }
    };
    result_args(ty).ok_or_else(|| {
        syn::Error::new(
            ty.span(),
            "an #[agent_action] must return `Result<T, E>` (with both types written out): `T` is stored for replay and `E: Classify` decides where a failure goes",
        )
    })
}

fn result_args(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(TypePath {
        qself: None, path, ..
    }) = ty
    else {
        return None;
    };
    let last = path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(ok), Some(err), None) => Some((ok, err)),
        _ => None,
    }
}

/// `&Run`, `&'a Run`, `&actguard::Run`: a shared reference to a path ending in `Run`.
fn is_run_type(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
            Type::Path(TypePath {
                qself: None, path, ..
            }) => path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Run" && s.arguments.is_none()),
            _ => false,
        },
        Type::Paren(p) => is_run_type(&p.elem),
        _ => false,
    }
}

fn check_key(args: &Args, effect: Effect, errors: &mut Errors) {
    match effect {
        // `explicit` rather than `args.key`: a key that was written but is malformed has its own error.
        Effect::Write | Effect::Destructive if !args.explicit.contains(&"key") => {
            let which = if effect == Effect::Write {
                "write"
            } else {
                "destructive"
            };
            errors.push(syn::Error::new(
                Span::call_site(),
                format!(
                    "a `{which}` action must declare its idempotency key: add `key = \"...\"` built from the parameters \
                     that identify this one intent, e.g. `key = \"disburse:{{instr.loan_id}}:{{instr.seq}}\"` \
                     (or declare `effect = read` if it writes nothing)"
                ),
            ));
        }
        Effect::Read => {
            for (option, template) in [("key", &args.key), ("record", &args.record)] {
                if let Some(t) = template {
                    errors.push(syn::Error::new(
                        t.name_span,
                        format!("a `read` action has no `{option}`: reads are not claimed, deduplicated or serialized; remove it or declare `effect = write`"),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// What a template may name.
struct Params<'a> {
    has_self: bool,
    run: &'a Option<Ident>,
    payload: &'a [Payload],
    deps: &'a [Dep],
    fn_name: &'a str,
    rejected_param: bool,
}

fn check_template_roots(template: &Template, params: &Params<'_>, errors: &mut Errors) {
    let span = template.lit.span();
    let fn_name = params.fn_name;
    for root in template.roots() {
        if root == "self" && params.has_self || params.payload.iter().any(|p| p.ident == root) {
            continue;
        }
        let message = if params.run.as_ref().is_some_and(|r| r == root) {
            format!(
                "`{{{root}}}` is the run handle: a key is built from the payload parameters that identify the intent, not from the run"
            )
        } else if params.deps.iter().any(|d| d.name == root) {
            format!(
                "`{{{root}}}` is a `#[dep]` parameter: a key is built from the payload parameters that identify the intent, not from clients or handles"
            )
        } else if params.rejected_param {
            continue;
        } else {
            let mut known: Vec<String> =
                params.payload.iter().map(|p| p.ident.to_string()).collect();
            if params.has_self {
                known.insert(0, "self".into());
            }
            let known = if known.is_empty() {
                format!("`{fn_name}` has no payload parameter")
            } else {
                format!(
                    "the payload parameters of `{fn_name}` are: {}",
                    known.join(", ")
                )
            };
            format!("`{{{root}}}` in this template is not a parameter of `{fn_name}`; {known}")
        };
        errors.push(syn::Error::new(span, message));
    }
}

fn check_windows(args: &Args, errors: &mut Errors) {
    let Some(cycle) = &args.cycle else { return };
    let (dedup, written) = match &args.dedup {
        Some(d) => match d.value {
            Some(ms) => (ms, true),
            None => return,
        },
        None => (DEFAULT_DEDUP_MS, false),
    };
    if dedup <= cycle.value {
        let (span, dedup_text) = match &args.dedup {
            Some(d) if written => (d.value_span, format!("`dedup = {}`", d.written)),
            _ => (cycle.value_span, "the default `dedup` (\"24h\")".to_owned()),
        };
        errors.push(syn::Error::new(
            span,
            format!(
                "{dedup_text} is not longer than `cycle = {}`: the loop filter must outlast a run cycle, \
                 or the next cycle acts on the same record again",
                cycle.written
            ),
        ));
    }
}

/// A `dedup` window needs a `record`: without one the record is the key, so a second call on the same
/// record always has the same key (replayed, never skipped) and the loop filter can never act.
/// `dedup = none` says the filter is off, which is true without a record too.
fn check_dedup_record(args: &Args, effect: Effect, errors: &mut Errors) {
    // A read has no record to declare (it is not claimed or deduplicated at all).
    if effect == Effect::Read || args.explicit.contains(&"record") {
        return;
    }
    let Some(dedup) = &args.dedup else { return };
    if dedup.value.is_none() {
        return;
    }
    errors.push(syn::Error::new(
        dedup.value_span,
        "`dedup` needs a `record`: the loop filter skips a second action on the same record within the \
         window, and without a `record` every key is its own record, so nothing is ever skipped. Add the \
         business object this action acts on, e.g. `record = \"{order.id}\"`, or remove `dedup`",
    ));
}

fn check_routes(args: &Args, errors: &mut Errors) {
    let routes = [
        ("on_transient", "transient", &args.on_transient),
        ("on_validation", "validation", &args.on_validation),
        ("on_conflict", "conflict", &args.on_conflict),
        ("on_security", "security", &args.on_security),
    ];
    for (option, kind, route) in routes {
        let Some(route) = route else { continue };
        match route.value {
            Route::Retry if kind != "transient" => errors.push(syn::Error::new(
                route.value_span,
                format!(
                    "`{option} = retry`: only transient failures may be retried; a {kind} failure fails the same way again. \
                     Use route_owner, escalate, dead_letter or halt"
                ),
            )),
            Route::RouteOwner if !args.explicit.contains(&"owner") => errors.push(syn::Error::new(
                route.value_span,
                format!("`{option} = route_owner` needs the data owner's queue: add `owner = \"...\"`"),
            )),
            Route::Escalate if !args.explicit.contains(&"expert") => errors.push(syn::Error::new(
                route.value_span,
                format!("`{option} = escalate` needs the domain expert's queue: add `expert = \"...\"`"),
            )),
            _ => {}
        }
    }
}
