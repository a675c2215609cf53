//! Rebuilds the crate when a migration is added. `sqlx::migrate!` embeds each migration file
//! (so an edited one is noticed), but on stable Rust it cannot tell cargo to watch the
//! directories themselves: without this, a new `migrations/*/*.sql` file would be missing from
//! the binary until something else changed in the crate.

use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "cargo::rerun-if-changed=migrations")?;
    Ok(())
}
