//! The `key`/`record` template parser: any text is a template or an error, never a panic.
#![no_main]

#[allow(dead_code)]
#[path = "../../macros/src/template.rs"]
mod template;

libfuzzer_sys::fuzz_target!(|text: &str| {
    let lit = syn::LitStr::new(text, proc_macro2::Span::call_site());
    let _ = template::Template::parse(&lit, "key");
});
