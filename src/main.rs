//! The `l2d` command-line tool: the offline half of l2d (prepare data, train, build memory and
//! blobs, evaluate, benchmark, recommend). Thin: it parses arguments, calls the library, prints.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> anyhow::Result<()> {
    cli::run()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
