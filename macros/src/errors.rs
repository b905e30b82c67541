//! Collects every error of one attribute so they are all reported together.

/// Errors found so far; `syn::Error::combine` keeps each with its own span.
#[derive(Default)]
pub struct Errors {
    all: Option<syn::Error>,
}

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.all {
            Some(all) => all.combine(error),
            None => self.all = Some(error),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_none()
    }

    /// `Err` with every error pushed, or `Ok(value)` if there were none.
    pub fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.all {
            Some(all) => Err(all),
            None => Ok(value),
        }
    }
}
