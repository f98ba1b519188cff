//! The `atlasnorm` command line: a thin layer over the library. A library itself so that the
//! Python package's `atlasnorm` console script and `atlasnorm.normalize` run the very same
//! command in-process ([`run`]); `src/main.rs` is the binary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use atlasnorm_store::kernel::log1p::Log1pKernel;
use atlasnorm_store::options::{parse_size, DEFAULT_MEMORY};
use atlasnorm_store::{Error, Options, Params, Progress};

#[derive(Parser)]
#[command(
    name = "atlasnorm",
    version,
    about = "scanpy's normalize_total + log1p, bit-identical, out of core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Normalize X (or a layer) of INPUT like sc.pp.normalize_total + sc.pp.log1p into OUTPUT.
    Normalize(Box<NormalizeArgs>),
    /// Show what is inside an AnnData file: elements, shapes, encodings, dtypes, chunks, codecs.
    Inspect { input: PathBuf },
    /// Write realistic synthetic UMI counts as an AnnData file.
    Synth(atlasnorm_store::synth::SynthArgs),
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct NormalizeArgs {
    input: PathBuf,
    output: PathBuf,
    /// Fixed target sum; without it: the median of the non-zero cell totals.
    #[arg(long)]
    target_sum: Option<f64>,
    /// Leave genes above --max-fraction of some cell's total out of the totals.
    #[arg(long)]
    exclude_highly_expressed: bool,
    #[arg(long, default_value_t = 0.05)]
    max_fraction: f64,
    /// Store the per-cell factor (total / target) as obs[NAME].
    #[arg(long, value_name = "NAME")]
    key_added: Option<String>,
    /// Normalize layers[NAME] instead of X.
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// Normalize only (default: normalize, then log1p).
    #[arg(long)]
    no_log1p: bool,
    /// log1p base (default: natural).
    #[arg(long, value_name = "B")]
    log1p_base: Option<f64>,
    /// log1p implementation: `numpy` picks what numpy picks on this CPU (SVML on x86-64-v4,
    /// libm otherwise); `svml` and `libm` force one (bit-identical to numpy only where
    /// numpy makes the same choice).
    #[arg(long, value_enum, default_value_t = KernelChoice::Numpy)]
    log1p_kernel: KernelChoice,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Memory budget for in-flight blocks, e.g. 512MiB, 2GiB (per-cell vectors, at most
    /// 16 bytes a cell, come on top).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Replace an existing OUTPUT.
    #[arg(long)]
    force: bool,
    /// At most N stored values per block (for testing and tuning; the budget sets the size
    /// otherwise).
    #[arg(long, value_name = "N")]
    block_values: Option<u64>,
    /// No progress bars and no summary.
    #[arg(long, short)]
    quiet: bool,
    /// Zarr format of a .zarr OUTPUT: 2 or 3 (default: the input's, else 3).
    #[arg(long, value_name = "2|3")]
    zarr_format: Option<String>,
    /// Compression of a .zarr OUTPUT: none, zstd[:LEVEL], blosc-lz4[:CLEVEL],
    /// blosc-zstd[:CLEVEL], gzip[:LEVEL] (default: the input's, else anndata's).
    #[arg(long, value_name = "CODEC")]
    zarr_codec: Option<String>,
    /// Elements per chunk of the normalized matrix's arrays in a .zarr OUTPUT (rows for a
    /// dense matrix; default: the input's, else anndata's).
    #[arg(long, value_name = "N")]
    zarr_chunk: Option<u64>,
    /// Elements per shard (zarr v3; a multiple of the chunk; 0: no shards).
    #[arg(long, value_name = "N")]
    zarr_shard: Option<u64>,
    /// S3-compatible endpoint for s3:// paths, e.g. http://127.0.0.1:9000 (MinIO),
    /// https://storage.googleapis.com (GCS) (default: AWS_ENDPOINT_URL, else AWS S3).
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// Region of the bucket (default: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// Permit an http:// endpoint (default: AWS_ALLOW_HTTP).
    #[arg(long)]
    s3_allow_http: bool,
    /// Requests to object storage in flight at once, reads and writes together; each
    /// pipelined upload holds one chunk in memory (default: 32).
    #[arg(long, value_name = "N")]
    s3_max_requests: Option<usize>,
    /// Retries of a request after a transient failure (timeouts, 5xx, refused connections),
    /// with exponential backoff (default: 6).
    #[arg(long, value_name = "N")]
    s3_retries: Option<usize>,
    /// Give up retrying a request this many seconds after its first attempt (default: 60).
    #[arg(long, value_name = "SECONDS")]
    s3_retry_timeout: Option<u64>,
    /// 10x INPUT: keep the features of this genome (scanpy's genome=; required for a legacy
    /// .h5 holding several genomes).
    #[arg(long, value_name = "NAME")]
    genome: Option<String>,
    /// 10x INPUT: keep every feature type, not only "Gene Expression" (scanpy's
    /// gex_only=False).
    #[arg(long)]
    all_features: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum KernelChoice {
    Numpy,
    Svml,
    Libm,
}

/// Runs the command line `args` (program name first) and returns its exit status: 0 on
/// success, 1 with one `error: ...` line on stderr, 2 for a usage error (clap's own message),
/// 128 + the signal when interrupted.
///
/// `own_signals`: remove the unfinished output and exit on SIGINT/SIGTERM/SIGHUP, as the
/// binary does; a host process that keeps its own handlers (Python) passes `false`.
pub fn run<I, T>(args: I, own_signals: bool) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and succeed.
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    if own_signals {
        remove_temporaries_on_interrupt();
    }
    let result = match cli.command {
        Command::Normalize(args) => normalize(*args),
        Command::Inspect { input } => {
            atlasnorm_store::inspect::inspect(&input).map(|text| print!("{text}"))
        }
        Command::Synth(args) => {
            atlasnorm_store::synth::run(&args).map(|summary| eprintln!("{summary}"))
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `atlasnorm normalize ARGS...` for a host process (the Python package's
/// `atlasnorm.normalize`): the same parsing, checks and job as the command line, without
/// progress bars or signal handlers, the report returned rather than printed.
///
/// # Errors
/// The message the command line would print after `error:` (or clap's usage text).
pub fn normalize_embedded<I, T>(args: I) -> Result<String, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let (input, output, opts) = parse_normalize(args)?;
    atlasnorm_store::normalize(&input, &output, &opts, &Bars::new(false))
        .map(|report| report.to_string())
        .map_err(|e| e.to_string())
}

/// The INPUT, OUTPUT and options of the command line `atlasnorm normalize ARGS...`, as the
/// command line parses and checks them (for hosts that run the job their own way, such as
/// the Dask driver's tasks).
///
/// # Errors
/// clap's usage text, or the message of an invalid option value.
pub fn parse_normalize<I, T>(args: I) -> Result<(PathBuf, PathBuf, Options), String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| e.render().to_string())?;
    let Command::Normalize(args) = cli.command else {
        return Err("not a normalize command".to_string());
    };
    let opts = options(&args).map_err(|e| e.to_string())?;
    Ok((args.input, args.output, opts))
}

/// On SIGINT, SIGTERM or SIGHUP: remove the half-written output (it lives under a temporary
/// name) and exit with 128 + the signal, as a shell would report it.
fn remove_temporaries_on_interrupt() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let reports = atlasnorm_store::store::temp::remove_all();
                if reports.is_empty() {
                    eprintln!("atlasnorm: interrupted; the unfinished output was removed");
                }
                for report in reports {
                    eprintln!("atlasnorm: interrupted; {report}");
                }
                std::process::exit(128 + signal);
            }
        });
    }
}

fn options(args: &NormalizeArgs) -> Result<Options, Error> {
    let s3 = s3_config(args);
    let params = Params {
        target_sum: args.target_sum,
        exclude_highly_expressed: args.exclude_highly_expressed,
        max_fraction: args.max_fraction,
        key_added: args.key_added.clone(),
        layer: args.layer.clone(),
        log1p: !args.no_log1p,
        log1p_base: args.log1p_base,
        log1p_kernel: match args.log1p_kernel {
            KernelChoice::Numpy => Log1pKernel::numpy_default(),
            KernelChoice::Svml => Log1pKernel::NumpySvml,
            KernelChoice::Libm => Log1pKernel::Libm,
        },
        threads: args.threads,
        memory: args
            .memory
            .as_deref()
            .map(parse_size)
            .transpose()?
            .unwrap_or(DEFAULT_MEMORY),
        max_block_values: args.block_values,
    };
    Ok(Options {
        params,
        force: args.force,
        zarr: atlasnorm_store::options::ZarrOutputOptions {
            format: args
                .zarr_format
                .as_deref()
                .map(atlasnorm_store::options::ZarrFormat::parse)
                .transpose()?,
            codec: args
                .zarr_codec
                .as_deref()
                .map(atlasnorm_store::options::ZarrCodec::parse)
                .transpose()?,
            chunk: args.zarr_chunk,
            shard: args.zarr_shard,
        },
        s3,
        tenx: atlasnorm_store::store::tenx::TenxOptions {
            genome: args.genome.clone(),
            all_features: args.all_features,
        },
    })
}

fn normalize(args: NormalizeArgs) -> Result<(), Error> {
    let opts = options(&args)?;
    let progress = Bars::new(!args.quiet && std::io::stderr().is_terminal());
    let report = atlasnorm_store::normalize(&args.input, &args.output, &opts, &progress)?;
    if !args.quiet {
        println!("{report}");
    }
    Ok(())
}

/// Object-storage settings: the environment, with the command line's flags on top.
fn s3_config(args: &NormalizeArgs) -> atlasnorm_store::store::zarr::s3::S3Config {
    let mut config = atlasnorm_store::store::zarr::s3::S3Config {
        endpoint: args.s3_endpoint.clone(),
        region: args.s3_region.clone(),
        ..Default::default()
    };
    if args.s3_allow_http {
        config.allow_http = Some(true);
    }
    if let Some(n) = args.s3_max_requests {
        config.max_concurrency = n.max(1);
    }
    if let Some(n) = args.s3_retries {
        config.max_retries = n;
    }
    if let Some(s) = args.s3_retry_timeout {
        config.retry_timeout = std::time::Duration::from_secs(s);
    }
    config
}

/// Progress bars on a terminal; warnings always go to stderr.
struct Bars {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new(enabled: bool) -> Self {
        Bars {
            enabled,
            bar: Mutex::new(None),
        }
    }
}

impl Progress for Bars {
    fn begin(&self, pass: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::new(total).with_message(pass.to_string());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>24} [{bar:40}] {percent:>3}% {elapsed_precise} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        *self.bar.lock().unwrap() = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar.lock().unwrap().as_ref() {
            bar.inc(n);
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar.lock().unwrap().take() {
            bar.finish_and_clear();
        }
    }

    fn warn(&self, message: &str) {
        match self.bar.lock().unwrap().as_ref() {
            Some(bar) => bar.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}
