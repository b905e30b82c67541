//! The registry of every action compiled into the program, collected with `inventory`.

use crate::policy::ActionSpec;

/// One action's registration; the attribute submits it.
#[doc(hidden)]
pub struct Registration(pub &'static ActionSpec);

inventory::collect!(Registration);

/// Every action compiled into this program, sorted by name.
///
/// Actions defined in a library crate are registered only if that crate is linked: if nothing else
/// references it, add `use my_actions as _;` to the binary.
pub fn registry() -> Vec<&'static ActionSpec> {
    let mut specs: Vec<&'static ActionSpec> =
        inventory::iter::<Registration>.into_iter().map(|r| r.0).collect();
    specs.sort_by(|a, b| a.name.cmp(b.name).then(a.file.cmp(b.file)).then(a.line.cmp(&b.line)));
    specs
}
