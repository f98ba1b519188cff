//! The file-to-file job (`atlasnorm normalize INPUT OUTPUT`): paths checked and claimed, the
//! backends chosen, then the engine run between them on a pool of `threads` workers.

use std::path::Path;
use std::time::Instant;

use atlasnorm_core::engine::{element_of, normalize_stores};

use crate::error::{Error, Result};
use crate::options::Options;
use crate::report::{Progress, Report};
use crate::store::{self, InputStore as _};

/// Normalizes `input` into `output` as `sc.pp.normalize_total` (+ `sc.pp.log1p`) would, and
/// writes every other element of the input unchanged. On error nothing is left under
/// `output`'s name.
pub fn normalize(
    input: &Path,
    output: &Path,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report> {
    let started = Instant::now();
    opts.validate()?;
    // Held until the output is committed or removed (see `store::temp::claim_output`).
    let _claim = check_paths(input, output, opts.force)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.params.threads.unwrap_or(0))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))?;
    let mut report = pool.install(|| run(input, output, opts, progress))?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Refuses an OUTPUT that is the INPUT (under any spelling) or that exists without `--force`.
/// Object storage: INPUT's existence is checked when it is opened, OUTPUT's when its prefix
/// is staged (both need the connection); here only an OUTPUT equal to INPUT is refused.
/// A local OUTPUT is claimed first (its directory checked, a concurrent run refused, dead
/// runs' leftovers cleared, so that what a killed `--force` run had moved aside is back
/// before OUTPUT's existence is judged); the claim is returned, to be held for the run.
pub(crate) fn check_paths(
    input: &Path,
    output: &Path,
    force: bool,
) -> Result<Option<store::temp::OutputClaim>> {
    let (in_s3, out_s3) = (
        store::is_object_storage(input),
        store::is_object_storage(output),
    );
    let claim = match out_s3 {
        false => Some(store::temp::claim_output(output)?),
        true => None,
    };
    if !out_s3 && !store::is_directory_store(output) && output.is_dir() {
        return Err(Error::output(
            output,
            "is a directory; an .h5ad OUTPUT is a file (remove the directory or choose \
             another name)",
        ));
    }
    if in_s3 || out_s3 {
        if in_s3 && out_s3 {
            let parse = |p: &Path| store::zarr::storage::Location::parse(p);
            if parse(input)? == parse(output)? {
                return Err(Error::output(
                    output,
                    "OUTPUT is the INPUT; atlasnorm never modifies its input (choose another \
                     OUTPUT)",
                ));
            }
        }
        if in_s3 {
            if !out_s3 && output.exists() && !force {
                return Err(Error::output(
                    output,
                    "already exists (use --force to replace it)",
                ));
            }
            return Ok(claim);
        }
        if !input.exists() {
            return Err(Error::input(input, "", "no such file"));
        }
        return Ok(claim);
    }
    if !input.exists() {
        return Err(Error::input(input, "", "no such file"));
    }
    if same_file(input, output) {
        return Err(Error::output(
            output,
            "OUTPUT is the INPUT; atlasnorm never modifies its input (choose another OUTPUT)",
        ));
    }
    if output.exists() && !force {
        return Err(Error::output(
            output,
            "already exists (use --force to replace it)",
        ));
    }
    Ok(claim)
}

fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn run(input: &Path, output: &Path, opts: &Options, progress: &dyn Progress) -> Result<Report> {
    let store = store::open_input_for(input, output, opts)?;
    let element = element_of(&opts.params);
    // Open the matrix first so that a missing or malformed element fails before any output.
    let meta = store.open_matrix(&element)?.meta().clone();
    // Every element copied unchanged is checked as anndata would read it (store/check.rs).
    store::check::check_input(&store, &element, &meta, opts.params.memory / 4)?;
    let out = store::create_output(&store, output, &element, opts)?;
    let mut report = normalize_stores(&store, out, &opts.params, progress)?;
    report.input_bytes = stored_bytes(input);
    Ok(report)
}

/// Bytes the input takes on disk: a file's length, or a directory store's files summed
/// (0 when unknown, e.g. object storage).
pub(crate) fn stored_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| stored_bytes(&e.path())).sum())
        .unwrap_or(0)
}
