//! Code generation for `#[agent_action]`: the spec, its registration, and the guarded call around the
//! user's body. Everything generated names `<crate>::__private::...`; the user's tokens keep their spans.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericArgument, ItemFn, PathArguments, ReturnType, Type};

use crate::args::{Compensate, Effect, Jitter, Opt, Route};
use crate::check::Action;

/// The path of the runtime crate: `::actguard` or the `crate = "..."` option.
pub fn crate_path(krate: Option<&Opt<syn::Path>>) -> TokenStream {
    match krate {
        Some(path) => path.value.to_token_stream(),
        None => quote!(::actguard),
    }
}

/// The guarded function: the user's signature with `E` replaced by `ActionError<E>`, and a body that
/// drives the guarded call.
pub fn expand(action: &Action, mut func: ItemFn) -> TokenStream {
    let krate = crate_path(action.args.krate.as_ref());
    let p = quote!(#krate::__private);
    let ok = &action.ok_ty;
    let err = &action.err_ty;
    let run = &action.run;

    // Nothing inside a `Redacted` may reach the key or the record: checked on their types.
    let secret_checks = [&action.args.key, &action.args.record]
        .into_iter()
        .flatten()
        .filter(|_| action.effect != Effect::Read)
        .map(|t| crate::secret::type_checks(&t.value, &p));
    let (key, record) = match action.effect {
        Effect::Read => (quote!(#p::None), quote!(#p::None)),
        Effect::Write | Effect::Destructive => {
            let key = action.args.key.as_ref().map(|k| &k.value);
            let key = key.map(|k| k.render(&p, &action.name, "new"));
            // Without a template of its own the record is the key's text: not rendered twice.
            let record = match &action.args.record {
                Some(r) => {
                    let record = r.value.render(&p, &action.name, "record");
                    quote!(#p::Some(#record))
                }
                None => quote!(#p::None),
            };
            (quote!(#p::Some(#key)), record)
        }
    };

    // In sorted order of their names: the runtime then writes the payload's canonical JSON (object
    // keys sorted) as the fields come, without sorting them at run time.
    let mut payload = action.payload.iter().collect::<Vec<_>>();
    payload.sort_by_key(|param| param.ident.to_string());
    let payload_fields = payload.into_iter().map(|param| {
        let name = param.ident.to_string();
        let (value, inner) = deref_to_referent(&param.ident, &param.ty);
        // Spanned on the parameter's type, so a type that is not `Serialize` is reported there.
        let span = inner.span();
        let p = respan(p.clone(), span);
        quote_spanned! {span=>
            #p::payload_field(&mut __agent_action_payload, #name, #value);
        }
    });
    let (invoke_fn, invoke) = match invoke(action, &func, &p) {
        Some(f) => (f, quote!(#p::Some(__agent_action_invoke))),
        None => (quote!(), quote!(#p::None)),
    };

    // A compensating action named by path must resolve (a misspelled one is a compile error there).
    let compensate_check = match action.args.compensate.as_ref().map(|c| &c.value) {
        Some(Compensate::Path(path)) => quote!(let _ = #path;),
        _ => quote!(),
    };

    // The calls that carry the bounds on `T` and `E` are spanned, the user's `T` and `E` included,
    // on the `Result` of the return type: an unmet bound is reported there, and only once (rustc
    // merges identical errors at one span), however many calls and awaits require it.
    let at = result_span(&func.sig.output);
    let ok_at = respan(ok.to_token_stream(), at);
    let err_at = respan(err.to_token_stream(), at);
    let p_at = respan(p.clone(), at);
    let bounded = |function: &str, args: TokenStream, awaited: bool| {
        let function = syn::Ident::new(function, at);
        let call = quote_spanned!(at=> #p_at::#function::<#ok_at, #err_at>(#args));
        if awaited {
            quote_spanned!(at=> #call.await)
        } else {
            call
        }
    };
    // One bounded call advances the guarded call (begins it, then settles each attempt): the state
    // machine generated for the action holds one runtime future and awaits it and the body only.
    let begin = bounded(
        "begin",
        quote!(&mut __agent_action_call, __agent_action_outcome),
        true,
    );
    let call_run = bounded("call_run", quote!(&__agent_action_call), false);

    let (tool_fn, tool) = tool(action, &p);
    let spec = spec(action, &p, invoke, tool);
    let block = &func.block;
    let body = quote! {
        {
            #invoke_fn
            #tool_fn
            static __AGENT_ACTION_SPEC: #p::ActionSpec = #spec;
            #p::inventory::submit! { #p::Registration(&__AGENT_ACTION_SPEC) }
            #compensate_check
            #(#secret_checks)*
            let __agent_action_key = #key;
            let __agent_action_record = #record;
            #[allow(unused_mut)]
            let mut __agent_action_payload = #p::PayloadFields::new(#run);
            #(#payload_fields)*
            let mut __agent_action_call = #p::Guard::new(
                #run,
                &__AGENT_ACTION_SPEC,
                __agent_action_key,
                __agent_action_record,
                __agent_action_payload.finish(),
            );
            let mut __agent_action_outcome = #p::None;
            loop {
                if let #p::Some(__agent_action_result) = #begin {
                    return __agent_action_result;
                }
                __agent_action_outcome = #p::Some({
                    #[allow(unused_variables)]
                    let #run: &#p::Run = #call_run;
                    #p::attempt::<#ok, #err, _>(#run, async #block).await
                });
            }
        }
    };

    wrap_error_type(&mut func.sig.output, &p);
    let attrs = &func.attrs;
    let vis = &func.vis;
    let sig = &func.sig;
    quote! {
        #(#attrs)*
        #vis #sig #body
    }
}

/// The function of an attribute with errors, as call sites expect it: the guarded signature
/// (`Result<T, ActionError<E>>`) and a body that never runs, since the crate does not compile. The
/// user's body is left out: written for `E`, it would not match the guarded signature.
pub fn fallback(func: &mut ItemFn, krate: &TokenStream) {
    let p = quote!(#krate::__private);
    wrap_error_type(&mut func.sig.output, &p);
    func.attrs
        .push(syn::parse_quote!(#[allow(unused_variables, clippy::diverging_sub_expression)]));
    *func.block = syn::parse_quote!({
        ::core::unreachable!("#[agent_action] reported errors on this function")
    });
}

/// The span of `Result` in `-> Result<T, E>`.
fn result_span(output: &ReturnType) -> Span {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .map_or_else(|| ty.span(), |last| last.ident.span()),
            _ => ty.span(),
        },
        ReturnType::Default => Span::call_site(),
    }
}

/// `Result<T, E>` → `Result<T, ActionError<E>>`, keeping the user's tokens around `E`.
fn wrap_error_type(output: &mut ReturnType, p: &TokenStream) {
    let ReturnType::Type(_, ty) = output else {
        return;
    };
    let Type::Path(path) = &mut **ty else { return };
    let Some(last) = path.path.segments.last_mut() else {
        return;
    };
    let PathArguments::AngleBracketed(args) = &mut last.arguments else {
        return;
    };
    if let Some(GenericArgument::Type(err)) = args
        .args
        .iter_mut()
        .filter(|a| matches!(a, GenericArgument::Type(_)))
        .nth(1)
    {
        let wrapped: Type = syn::parse_quote_spanned!(err.span()=> #p::ActionError<#err>);
        *err = wrapped;
    }
}

/// A parameter `x: &&T` as the expression `*x` of type `&T`, and `T`: the bound on the payload is
/// then checked on `T` itself, so the message names the user's type rather than a reference to it.
fn deref_to_referent<'a>(ident: &syn::Ident, ty: &'a Type) -> (TokenStream, &'a Type) {
    let mut inner = ty;
    let mut depth = 0usize;
    loop {
        match inner {
            Type::Reference(r) => {
                inner = &r.elem;
                depth += 1;
            }
            Type::Paren(p) => inner = &p.elem,
            Type::Group(g) => inner = &g.elem,
            _ => break,
        }
    }
    let span = inner.span();
    let mut ident = ident.clone();
    ident.set_span(span);
    let value = if depth == 0 {
        quote_spanned!(span=> &#ident)
    } else {
        let stars = std::iter::repeat_n(quote_spanned!(span=> *), depth - 1);
        quote_spanned!(span=> #(#stars)* #ident)
    };
    (value, inner)
}

/// `ty` without invisible groups and parentheses.
fn strip_groups(ty: &Type) -> &Type {
    match ty {
        Type::Paren(p) => strip_groups(&p.elem),
        Type::Group(g) => strip_groups(&g.elem),
        _ => ty,
    }
}

/// The function that calls the action from a stored payload (replay, revert), for free non-generic
/// functions whose parameters are the run, payloads by value or `&T`, and deps by value or `&T`;
/// `None` otherwise (methods, generics, `impl Trait`, `&mut` or nested references): such actions are
/// not invocable by operations.
///
/// It reads the owned arguments (payload fields, deps taken by value; deps taken by reference are
/// looked up), in parameter order, and hands them with `call`, which starts the guarded call, to the
/// runtime's `invoke`, whose state machine is compiled once per argument tuple.
fn invoke(action: &Action, func: &ItemFn, p: &TokenStream) -> Option<TokenStream> {
    let sig = &func.sig;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return None;
    }
    let fn_ident = &sig.ident;
    let name = &action.name;
    // One statement per parameter, in order; the owned arguments they read.
    let mut reads = Vec::new();
    let mut owned = Vec::new();
    // `call`: the deps taken by reference, and the arguments of the call.
    let mut lets = Vec::new();
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let syn::FnArg::Typed(pat) = input else {
            return None;
        };
        let syn::Pat::Ident(ident) = &*pat.pat else {
            return None;
        };
        let ident = &ident.ident;
        let local = syn::Ident::new(&format!("__agent_action_arg{i}"), Span::call_site());
        let ty = strip_groups(&pat.ty);
        if contains_impl_trait(ty) {
            return None;
        }
        let (by_ref, inner) = match ty {
            Type::Reference(r) if r.mutability.is_none() => {
                let inner = strip_groups(&r.elem);
                if matches!(inner, Type::Reference(_)) {
                    return None;
                }
                (true, inner)
            }
            Type::Reference(_) => return None,
            other => (false, other),
        };
        if matches!(inner, Type::TraitObject(_)) {
            return None;
        }
        if *ident == action.run {
            args.push(quote!(__agent_action_invoked));
            continue;
        }
        let field = ident.to_string();
        if action.payload.iter().any(|param| param.ident == *ident) {
            // Spanned on the type, like the payload bound, so an unmet bound is reported once.
            let span = inner.span();
            let ps = respan(p.clone(), span);
            let read = quote_spanned! {span=>
                #ps::invoke_field::<#inner>(#name, &__agent_action_stored, #field)
            };
            let read = try_read(read, p);
            if by_ref {
                reads.push(quote!(let #local = #read;));
                args.push(quote!(&**#local));
            } else {
                reads.push(quote!(let #local = #p::Some(*#read);));
                args.push(quote!(#p::invoke_take(#local)));
            }
            owned.push(local);
        } else if by_ref {
            // Looked up in order with the rest (the first missing argument is the one reported), and
            // borrowed from the invoked run's agent (the same agent) by `call`.
            let read = try_read(
                quote!(#p::invoke_dep::<#inner>(__agent_action_run, #name)),
                p,
            );
            reads.push(quote!(#read;));
            lets.push(quote! {
                let #local: &#inner = #p::invoke_dep::<#inner>(__agent_action_invoked, #name)?;
            });
            args.push(quote!(#local));
        } else {
            let read = try_read(
                quote!(#p::invoke_dep_owned::<#inner>(__agent_action_run, #name)),
                p,
            );
            reads.push(quote!(let #local = #p::Some(#read);));
            args.push(quote!(#p::invoke_take(#local)));
            owned.push(local);
        }
    }
    Some(quote! {
        fn __agent_action_invoke<'__agent_action_a>(
            __agent_action_run: &'__agent_action_a #p::Run,
            __agent_action_stored: #p::Value,
        ) -> #p::Pin<#p::Box<dyn #p::Future<Output = #p::Result<#p::Invoked, #p::InvokeError>>
            + ::core::marker::Send + '__agent_action_a>> {
            #(#reads)*
            #p::invoke(
                __agent_action_run,
                #name,
                (#(#owned,)*),
                |__agent_action_invoked, __agent_action_args| {
                    let (#(#owned,)*) = __agent_action_args;
                    #(#lets)*
                    #p::Ok(#p::Box::pin(#fn_ident(#(#args),*)))
                },
            )
        }
    })
}

/// `expr` (a `Result<_, InvokeError>`) unwrapped, or the invocation answers its error.
fn try_read(expr: TokenStream, p: &TokenStream) -> TokenStream {
    quote! {
        match #expr {
            #p::Ok(__agent_action_value) => __agent_action_value,
            #p::Err(__agent_action_error) => return #p::invoke_failed(__agent_action_error),
        }
    }
}

/// Whether `ty` mentions `impl Trait` (an anonymous generic) or a type that cannot be named here.
fn contains_impl_trait(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(_) | Type::Infer(_) | Type::Macro(_) | Type::Verbatim(_) => true,
        Type::Reference(r) => contains_impl_trait(&r.elem),
        Type::Paren(p) => contains_impl_trait(&p.elem),
        Type::Group(g) => contains_impl_trait(&g.elem),
        Type::Slice(s) => contains_impl_trait(&s.elem),
        Type::Array(a) => contains_impl_trait(&a.elem),
        Type::Ptr(p) => contains_impl_trait(&p.elem),
        Type::Tuple(t) => t.elems.iter().any(contains_impl_trait),
        Type::Path(path) => path.path.segments.iter().any(|seg| match &seg.arguments {
            PathArguments::AngleBracketed(args) => args.args.iter().any(|a| match a {
                GenericArgument::Type(t) => contains_impl_trait(t),
                _ => false,
            }),
            _ => false,
        }),
        _ => false,
    }
}

/// The tool an action is exported as (`tool`): its description, and a function building the JSON
/// Schema of its payload parameters, each bound to `ToolParam` (a `schemars::JsonSchema`) on its type.
fn tool(action: &Action, p: &TokenStream) -> (TokenStream, TokenStream) {
    let Some(description) = &action.tool else {
        return (quote!(), quote!(#p::None));
    };
    let params = action.payload.iter().map(|param| {
        let name = param.ident.to_string();
        let inner = match strip_groups(&param.ty) {
            Type::Reference(r) => strip_groups(&r.elem),
            other => other,
        };
        let required = !is_option(inner);
        let span = inner.span();
        quote_spanned! {span=>
            __agent_action_schema.param::<#inner>(#name, #required);
        }
    });
    let schema_fn = quote! {
        fn __agent_action_tool_schema() -> #p::Value {
            let mut __agent_action_schema = #p::ToolSchema::new();
            #(#params)*
            __agent_action_schema.finish()
        }
    };
    let spec = quote! {
        #p::Some(#p::ToolSpec {
            description: #description,
            input_schema: __agent_action_tool_schema,
        })
    };
    (schema_fn, spec)
}

/// Whether `ty` is written `Option<...>` (a parameter a model may leave out).
fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

fn spec(action: &Action, p: &TokenStream, invoke: TokenStream, tool: TokenStream) -> TokenStream {
    let args = &action.args;
    let name = &action.name;
    let fn_name = &action.fn_name;
    let effect = match action.effect {
        Effect::Read => quote!(#p::Effect::Read),
        Effect::Write => quote!(#p::Effect::Write),
        Effect::Destructive => quote!(#p::Effect::Destructive),
    };
    let template = |t: &Option<Opt<crate::template::Template>>| match t {
        Some(t) => {
            let text = t.value.lit.value();
            quote!(#p::Some(#text))
        }
        None => quote!(#p::None),
    };
    let key = template(&args.key);
    let record = template(&args.record);
    let compensate = match &action.compensate_name {
        Some(c) => quote!(#p::Some(#c)),
        None => quote!(#p::None),
    };
    let explicit = &args.explicit;
    let param_specs = |params: Vec<(String, &Type)>| {
        let specs = params.into_iter().map(|(name, ty)| {
            let ty = type_string(ty);
            quote!(#p::ParamSpec { name: #name, ty: #ty })
        });
        quote!(&[#(#specs),*])
    };
    let payload = param_specs(
        action
            .payload
            .iter()
            .map(|param| (param.ident.to_string(), &param.ty))
            .collect(),
    );
    let deps = param_specs(
        action
            .deps
            .iter()
            .map(|d| (d.name.clone(), &d.ty))
            .collect(),
    );
    let result_type = type_string(&action.ok_ty);
    let error_type = type_string(&action.err_ty);
    let policy = policy(action, p);
    quote! {
        #p::ActionSpec {
            name: #name,
            fn_name: #fn_name,
            module_path: ::core::module_path!(),
            file: ::core::file!(),
            line: ::core::line!(),
            effect: #effect,
            key: #key,
            record: #record,
            policy: #policy,
            compensate: #compensate,
            explicit: &[#(#explicit),*],
            payload: #payload,
            deps: #deps,
            result_type: #result_type,
            error_type: #error_type,
            tool: #tool,
            invoke: #invoke,
        }
    }
}

/// The written policy options over `Policy::DEFAULT`, so the defaults live in one place (the runtime).
fn policy(action: &Action, p: &TokenStream) -> TokenStream {
    let args = &action.args;
    let ms = |v: u64| quote!(#p::Duration::from_millis(#v));
    let route = |r: Route| match r {
        Route::Retry => quote!(#p::Route::Retry),
        Route::RouteOwner => quote!(#p::Route::RouteOwner),
        Route::Escalate => quote!(#p::Route::Escalate),
        Route::DeadLetter => quote!(#p::Route::DeadLetter),
        Route::Halt => quote!(#p::Route::Halt),
    };
    let mut fields = Vec::new();
    if let Some(r) = &args.retries {
        let v = r.value;
        fields.push(quote!(retries: #v));
    }
    if let Some(d) = &args.max_elapsed {
        let v = ms(d.value);
        fields.push(quote!(max_elapsed: #v));
    }
    if let Some(b) = &args.backoff {
        let base = ms(b.value.base_ms);
        let cap = ms(b.value.cap_ms);
        fields.push(quote!(backoff_base: #base));
        fields.push(quote!(backoff_cap: #cap));
    }
    if let Some(j) = &args.jitter {
        let j = match j.value {
            Jitter::Full => quote!(#p::Jitter::Full),
            Jitter::Equal => quote!(#p::Jitter::Equal),
            Jitter::Decorrelated => quote!(#p::Jitter::Decorrelated),
            Jitter::None => quote!(#p::Jitter::None),
        };
        fields.push(quote!(jitter: #j));
    }
    if let Some(d) = &args.dedup {
        let v = match d.value {
            Some(v) => {
                let v = ms(v);
                quote!(#p::Some(#v))
            }
            None => quote!(#p::None),
        };
        fields.push(quote!(dedup: #v));
    }
    if let Some(c) = &args.cycle {
        let v = ms(c.value);
        fields.push(quote!(cycle: #p::Some(#v)));
    }
    if let Some(l) = &args.lease {
        let v = ms(l.value);
        fields.push(quote!(lease: #v));
    }
    for (field, opt) in [
        (quote!(on_transient), &args.on_transient),
        (quote!(on_validation), &args.on_validation),
        (quote!(on_conflict), &args.on_conflict),
        (quote!(on_security), &args.on_security),
    ] {
        if let Some(r) = opt {
            let r = route(r.value);
            fields.push(quote!(#field: #r));
        }
    }
    if let Some(e) = &args.approval_expires {
        let v = ms(e.value);
        fields.push(quote!(approval_expires: #v));
    }
    for (field, opt) in [
        (quote!(owner), &args.owner),
        (quote!(expert), &args.expert),
        (quote!(approve), &args.approve),
    ] {
        if let Some(q) = opt {
            let q = &q.value;
            fields.push(quote!(#field: #p::Some(#q)));
        }
    }
    quote! {
        #p::Policy { #(#fields,)* ..#p::Policy::DEFAULT }
    }
}

/// A type as written, spaced the way rustfmt would: `&'a Vec<u8>`, not `& 'a Vec < u8 >`.
pub fn type_string(ty: &Type) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(raw.len());
    let tokens: Vec<&str> = raw.split(' ').collect();
    for (i, token) in tokens.iter().enumerate() {
        let prev = if i > 0 { tokens[i - 1] } else { "" };
        let glue = i == 0
            || matches!(*token, "<" | ">" | "," | "::" | ">>" | ")" | "]" | ";")
            || matches!(prev, "<" | "::" | "&" | "(" | "[" | "*")
            || (*token == "(" && !matches!(prev, "dyn" | "impl" | "," | "->" | "+"));
        if !glue {
            out.push(' ');
        }
        out.push_str(token);
    }
    out
}

/// `tokens` with every span (recursively) set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}
