//! The library without the CLI: normalize an .h5ad file with a fixed target and report.
//!
//! ```sh
//! cargo run --release --example normalize_file -- INPUT.h5ad OUTPUT.h5ad
//! ```

use atlasnorm_store::{normalize, Options, Params, Progress};

/// Prints each pass as it starts and every warning scanpy would emit.
struct Log;

impl Progress for Log {
    fn begin(&self, pass: &str, total: u64) {
        eprintln!("{pass}: {total} rows");
    }
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        return Err("usage: normalize_file INPUT.h5ad OUTPUT.h5ad".into());
    };
    let opts = Options {
        params: Params {
            target_sum: Some(1e4),
            key_added: Some("size_factor".into()),
            memory: 256 << 20,
            ..Params::default()
        },
        force: true,
        ..Options::default()
    };
    let report = normalize(input.as_ref(), output.as_ref(), &opts, &Log)?;
    println!("{report}");
    Ok(())
}
