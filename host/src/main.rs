//! The `keel` command.

use anyhow::Result;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--version" | "-V") => {
            println!("keel {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command {other:?}; try `keel --version`"),
        None => anyhow::bail!("no command given; try `keel --version`"),
    }
}
