//! Declares a few actions and prints the registry.

fn main() {
    for spec in actguard::registry() {
        println!("{}", spec.name);
    }
}
