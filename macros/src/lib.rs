//! Procedural macros of actguard. Use them through the `actguard` crate, which re-exports them.

use proc_macro::TokenStream;

/// Turns an async function that writes to an external system into a guarded action.
#[proc_macro_attribute]
pub fn agent_action(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Implements `actguard::Classify` for an error enum.
#[proc_macro_derive(Classify, attributes(classify))]
pub fn derive_classify(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
