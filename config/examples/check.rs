//! `cargo run -p xdhcp-config --example check -- FILE...`: prints what `load_file` reports, for development.
fn main() {
    for f in std::env::args().skip(1) {
        match xdhcp_config::load_file(std::path::Path::new(&f)) {
            Ok(l) => {
                println!("OK {f} ({} warnings)", l.warnings.len());
                for w in &l.warnings {
                    println!("  warning: {w}");
                }
            }
            Err(e) => println!("FAIL {e}"),
        }
    }
}
