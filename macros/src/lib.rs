//! Procedural macros of actguard: `#[agent_action]` and `#[derive(Classify)]`. Use them through the
//! `actguard` crate, which re-exports them with their documentation and examples.

use proc_macro::TokenStream;
use quote::ToTokens;

mod args;
mod check;
mod classify;
mod duration;
mod errors;
mod expand;
mod secret;
mod template;

// Documented where users see it: on the re-export in `actguard` (runtime/docs/agent_action.md), where
// the examples can use the runtime.
#[proc_macro_attribute]
pub fn agent_action(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = errors::Errors::default();
    let args = args::Args::parse(args.into(), &mut errors);
    let mut func: syn::ItemFn = match syn::parse(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[agent_action] goes on an `async fn` with a body (a free function or a method)",
            );
            let mut out = error.to_compile_error();
            out.extend(proc_macro2::TokenStream::from(item));
            return out.into();
        }
    };
    let is_dep = check::strip_dep_markers(&mut func);
    let krate = expand::crate_path(args.krate.as_ref());
    match check::check(args, &func, &is_dep, &mut errors) {
        Some(action) if errors.is_empty() => expand::expand(&action, func).into(),
        // The function is still emitted, with the signature the attribute gives it, so the only
        // diagnostics are the ones above: call sites see `Result<T, ActionError<E>>` as they would,
        // and tools keep seeing the function.
        _ => {
            let mut out = errors
                .finish(())
                .err()
                .map(|e| e.to_compile_error())
                .unwrap_or_default();
            expand::fallback(&mut func, &krate);
            func.to_tokens(&mut out);
            out.into()
        }
    }
}

// Documented on the re-export in `actguard`, next to the `Classify` trait.
#[proc_macro_derive(Classify, attributes(classify))]
pub fn derive_classify(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    classify::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
