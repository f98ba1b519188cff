//! Output-side faults, with the real binary on real file systems: a full disk (a small
//! tmpfs), a read-only directory (a tmpfs remounted read-only: root ignores permission
//! bits, so `chmod` would prove nothing), a missing directory, a file in the way, two runs
//! on one OUTPUT, and `kill -9` at many moments of a run followed by the next run.
//!
//! Every failure must be one plain line naming OUTPUT (and the element being written when
//! the disk fills up), exit non-zero, and leave the directory as it was. These tests need
//! root to mount tmpfs; where mounting is impossible they fail, saying so: they never skip.

use atlasnorm_testkit::python as h5ad_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_atlasnorm");

fn atlasnorm(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("cannot run atlasnorm")
}

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run atlasnorm")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The entries of `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The run failed with exactly one plain error line (no HDF5 stack, no errno, no
/// addresses, no "(os error N)"); returns it without the `error: ` prefix.
fn one_plain_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the run succeeded; stderr:\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got:\n{stderr}");
    let line = lines[0];
    for noise in [
        "HDF5",
        "errno",
        "os error",
        "file descriptor",
        "time =",
        "IO error",
    ] {
        assert!(!line.contains(noise), "{noise:?} in: {line}");
    }
    // An address is a word of its own ("0x7f3a..."): the line names temporary directories,
    // whose random names may hold "0x" (once in ~200 mounts; the likely cause of one failure
    // of `an_already_full_disk` seen here, whose message was not kept).
    let address = line.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        w.len() > 2 && w.starts_with("0x") && w[2..].chars().all(|c| c.is_ascii_hexdigit())
    });
    assert!(!address, "an address in: {line}");
    line.strip_prefix("error: ")
        .unwrap_or_else(|| panic!("not an error line: {line}"))
        .to_string()
}

/// A tmpfs mounted on a fresh directory for the test's life (unmounted on drop).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {} ({}): these tests need root with CAP_SYS_ADMIN to \
             fill a small file system and to make one read-only; they fail rather than skip",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "cannot remount {} read-only: {}",
            self.path().display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// Fills the file system with one file, leaving nothing free.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = vec![7u8; 64 << 10];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "filling: {e}");
                    break;
                }
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// Inputs shared by the tests, made once with `atlasnorm synth` (and a normalize into a
/// zarr store for the zarr input).
struct Inputs {
    /// ~1,500 cells: a few MB.
    small: PathBuf,
    small_zarr: PathBuf,
    /// Big enough that a run lasts around a second with one thread.
    big: PathBuf,
}

fn inputs() -> &'static Inputs {
    static INPUTS: OnceLock<Inputs> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-inputs");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.h5ad");
        let big = dir.join("big.h5ad");
        let small_zarr = dir.join("small.zarr");
        for (path, cells) in [(&small, "1500"), (&big, "30000")] {
            let out = atlasnorm(&[
                "synth",
                p(path),
                "--cells",
                cells,
                "--genes",
                "2000",
                "--umis",
                "1500",
            ]);
            assert!(out.status.success(), "synth: {out:?}");
        }
        let out = atlasnorm(&[
            "normalize",
            p(&small),
            p(&small_zarr),
            "--no-log1p",
            "--target-sum",
            "1e4",
            "--quiet",
        ]);
        assert!(out.status.success(), "making the zarr input: {out:?}");
        Inputs {
            small,
            small_zarr,
            big,
        }
    })
}

/// Bytes under `path` (a file, or a directory's files).
fn size_of(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| size_of(&e.unwrap().path()))
        .sum()
}

/// The values of X/data in an output, decoded (h5ad via HDF5, zarr via zarrs), as bits:
/// the encoded bytes of a sharded zarr array may differ between equal outputs.
fn x_data(out: &Path) -> Vec<u32> {
    let v: Vec<f32> = if out.extension().is_some_and(|e| e == "zarr") {
        let store = std::sync::Arc::new(zarrs::filesystem::FilesystemStore::new(out).unwrap());
        let array = zarrs::array::Array::open(store, "/X/data").unwrap();
        array
            .retrieve_array_subset::<Vec<f32>>(&array.subset_all())
            .unwrap()
    } else {
        let f = hdf5::File::open(out).unwrap();
        f.dataset("X/data").unwrap().read_raw().unwrap()
    };
    v.iter().map(|x| x.to_bits()).collect()
}

/// `a == b`, described briefly when not (the arrays are too long to print).
fn differ(a: &[u32], b: &[u32]) -> Option<String> {
    if a == b {
        return None;
    }
    let first = a.iter().zip(b).position(|(x, y)| x != y);
    Some(format!(
        "{} vs {} values, first difference at {first:?}",
        a.len(),
        b.len()
    ))
}

/// `cp -a`: a file or a directory store.
fn copy(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

fn remove(path: &Path) {
    std::fs::remove_file(path)
        .or_else(|_| std::fs::remove_dir_all(path))
        .unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
}

/// anndata 0.13 reads the whole output.
fn anndata_reads(out: &Path) {
    h5ad_common::run_py(
        "import sys, anndata as ad\n\
         p = sys.argv[1]\n\
         a = ad.read_zarr(p) if p.endswith('.zarr') else ad.read_h5ad(p)\n\
         assert a.X.nnz > 0, a\n",
        &[p(out)],
    );
}

// ---------------------------------------------------------------------------------------
// A full disk

/// A tmpfs with room for everything of the output but about half of X/data: the run fails
/// while writing X/data, says so plainly, and leaves the tmpfs empty.
fn full_disk_while_writing_x_data(input: &Path, out_name: &str, extra: &[&str]) {
    let scratch = tempfile::tempdir().unwrap();
    let reference = scratch.path().join(out_name);
    let mut args = vec!["normalize", p(input), p(&reference), "--quiet"];
    args.extend_from_slice(extra);
    let out = atlasnorm(&args);
    assert!(out.status.success(), "reference run: {out:?}");
    let total = size_of(&reference);
    // X/data as stored (an uncompressed HDF5 dataset; a zarr array's files).
    let data = if out_name.ends_with(".zarr") {
        size_of(&reference.join("X/data"))
    } else {
        4 * x_data(&reference).len() as u64
    };
    assert!(
        data * 3 > total,
        "X/data ({data} bytes) should be a large part of the output ({total} bytes)"
    );
    // Room for all but half of X/data (tmpfs counts whole pages: some slack for them).
    let fs = Tmpfs::mount((total - data / 2).next_multiple_of(4096));
    let target = fs.path().join(out_name);
    args[2] = p(&target);
    let out = atlasnorm(&args);
    let line = one_plain_error(&out);
    let expected = format!(
        "{}: no space left on device while writing X/data",
        p(&target)
    );
    assert!(
        line.starts_with(&expected),
        "{line}\nexpected: {expected}..."
    );
    assert!(
        names(fs.path()).is_empty(),
        "left behind: {:?}",
        names(fs.path())
    );
}

#[test]
fn a_full_disk_while_writing_x_data_h5ad() {
    full_disk_while_writing_x_data(&inputs().small, "out.h5ad", &[]);
}

#[test]
fn a_full_disk_while_writing_x_data_h5ad_to_zarr() {
    full_disk_while_writing_x_data(&inputs().small, "out.zarr", &["--zarr-codec", "none"]);
}

#[test]
fn a_full_disk_while_writing_x_data_zarr_to_zarr() {
    full_disk_while_writing_x_data(&inputs().small_zarr, "out.zarr", &[]);
}

/// A file system already full: the run fails at its first write, plainly, and leaves only
/// what was there (the filler).
#[test]
fn an_already_full_disk() {
    for out_name in ["out.h5ad", "out.zarr"] {
        for input in [&inputs().small, &inputs().small_zarr] {
            let fs = Tmpfs::mount(1 << 20);
            fs.fill();
            let target = fs.path().join(out_name);
            let out = atlasnorm(&["normalize", p(input), p(&target), "--quiet"]);
            let line = one_plain_error(&out);
            let expected = format!("{}: no space left on device while ", p(&target));
            assert!(
                line.starts_with(&expected),
                "{line}\nexpected: {expected}..."
            );
            assert_eq!(names(fs.path()), ["filler"]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Where OUTPUT cannot go

#[test]
fn a_read_only_directory_is_refused_before_any_work() {
    let fs = Tmpfs::mount(1 << 20);
    std::fs::write(fs.path().join("was-here"), b"x").unwrap();
    fs.remount_read_only();
    for out_name in ["out.h5ad", "out.zarr"] {
        let target = fs.path().join(out_name);
        let out = atlasnorm(&["normalize", p(&inputs().small), p(&target), "--quiet"]);
        assert_eq!(
            one_plain_error(&out),
            format!(
                "{}: cannot write in the output directory {}: read-only file system",
                p(&target),
                p(fs.path())
            )
        );
    }
    assert_eq!(names(fs.path()), ["was-here"]);
}

#[test]
fn a_missing_directory_or_a_file_in_the_way_is_refused_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a-file"), b"x").unwrap();
    std::fs::create_dir(d.join("out.h5ad")).unwrap();
    let input = p(&inputs().small);
    for out_name in ["out.h5ad", "out.zarr"] {
        let missing = d.join("no-such-dir").join(out_name);
        let out = atlasnorm(&["normalize", input, p(&missing), "--quiet"]);
        assert_eq!(
            one_plain_error(&out),
            format!(
                "{}: the output directory {} does not exist",
                p(&missing),
                p(&d.join("no-such-dir"))
            )
        );
        let under_file = d.join("a-file").join(out_name);
        let out = atlasnorm(&["normalize", input, p(&under_file), "--quiet"]);
        assert_eq!(
            one_plain_error(&out),
            format!(
                "{}: {} is not a directory",
                p(&under_file),
                p(&d.join("a-file"))
            )
        );
        let deeper = d.join("a-file/sub").join(out_name);
        let out = atlasnorm(&["normalize", input, p(&deeper), "--quiet"]);
        assert_eq!(
            one_plain_error(&out),
            format!(
                "{}: cannot use the output directory {}: not a directory",
                p(&deeper),
                p(&d.join("a-file/sub"))
            )
        );
    }
    // An .h5ad OUTPUT that is a directory: refused up front, --force or not.
    let target = d.join("out.h5ad");
    for force in [false, true] {
        let mut args = vec!["normalize", input, p(&target), "--quiet"];
        if force {
            args.push("--force");
        }
        assert_eq!(
            one_plain_error(&atlasnorm(&args)),
            format!(
                "{}: is a directory; an .h5ad OUTPUT is a file (remove the directory or \
                 choose another name)",
                p(&target)
            )
        );
    }
    assert_eq!(names(d), ["a-file", "out.h5ad"]);
    assert!(names(&target).is_empty());
}

// ---------------------------------------------------------------------------------------
// Two runs, one OUTPUT

/// Waits until `path` exists (the run got that far), at most 60 s.
fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the run ended ({status}) before {} appeared",
                path.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {} failed", child.id());
}

/// The second run on an OUTPUT being written is refused at once and touches nothing; the
/// first finishes normally.
#[test]
fn a_second_run_on_the_same_output_is_refused_and_the_first_completes() {
    for out_name in ["out.h5ad", "out.zarr"] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(out_name);
        let args = [
            "normalize",
            p(&inputs().big),
            p(&target),
            "--quiet",
            "--threads",
            "1",
        ];
        let mut first = spawn(&args);
        let tmp = dir
            .path()
            .join(format!(".{out_name}.atlasnorm-{}.tmp", first.id()));
        wait_for(&tmp, &mut first);
        // Frozen mid-run: deterministic, however fast the machine.
        signal(&first, "-STOP");
        let before = names(dir.path());
        for force in [false, true] {
            let mut second = args.to_vec();
            if force {
                second.push("--force");
            }
            let line = one_plain_error(&atlasnorm(&second));
            assert_eq!(
                line,
                format!(
                    "{}: another atlasnorm run (pid {}) is writing this output; wait for it \
                     to finish or choose another OUTPUT",
                    p(&target),
                    first.id()
                )
            );
            assert_eq!(names(dir.path()), before);
        }
        signal(&first, "-CONT");
        let status = first.wait().unwrap();
        assert!(status.success(), "the first run failed: {status}");
        assert_eq!(names(dir.path()), [out_name]);
    }
}

// ---------------------------------------------------------------------------------------
// kill -9, then the next run

/// What a SIGKILL at some moment left, as the next run finds it.
#[derive(Debug, Default)]
struct Moments {
    before_any_output: u32,
    while_writing: u32,
    after_commit: u32,
}

/// Kills runs of `input` into `out_name` at moments spread over a whole run (and a little
/// past it), in `dir` already holding `before` (e.g. an OUTPUT to replace with --force).
/// Right after each kill OUTPUT is what was there or the complete new output (never
/// partial); the next run — a failing one every third time, else a successful one —
/// leaves exactly `before` (failing) or `before` plus OUTPUT (succeeding), with the output
/// equal to an uninterrupted run's.
fn kill_sweep(input: &Path, out_name: &str, old_output: bool) {
    let scratch = tempfile::tempdir().unwrap();
    let reference = scratch.path().join(out_name);
    let base = [
        "normalize",
        p(input),
        p(&reference),
        "--quiet",
        "--threads",
        "1",
        "--force",
    ];
    let started = Instant::now();
    let out = atlasnorm(&base);
    let took = started.elapsed();
    assert!(out.status.success(), "reference run: {out:?}");
    let expected = x_data(&reference);

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(out_name);
    let mut args = base;
    args[2] = p(&target);
    // An earlier, different output (no log1p) for --force to replace, kept pristine here.
    let old_copy = scratch.path().join(format!("old-{out_name}"));
    let old_data = if old_output {
        let out = atlasnorm(&["normalize", p(input), p(&old_copy), "--quiet", "--no-log1p"]);
        assert!(out.status.success(), "{out:?}");
        copy(&old_copy, &target);
        Some(x_data(&target))
    } else {
        None
    };
    let before = names(dir.path());

    let points = 16;
    let mut moments = Moments::default();
    for i in 0..points {
        let delay = took.mul_f64(1.15 * i as f64 / (points - 1) as f64);
        let mut child = spawn(&args);
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let left = names(dir.path());
        let pending = left.iter().any(|n| n.ends_with(".tmp"));
        // OUTPUT right after the kill: absent, the old one, or complete.
        if target.exists() {
            let now = x_data(&target);
            if Some(&now) == old_data.as_ref() && pending {
                moments.while_writing += 1;
            } else if Some(&now) == old_data.as_ref() {
                moments.before_any_output += 1;
            } else {
                if let Some(d) = differ(&now, &expected) {
                    panic!("a partial OUTPUT after kill at {delay:?}: {d}");
                }
                moments.after_commit += 1;
            }
        } else if pending {
            moments.while_writing += 1;
        } else {
            moments.before_any_output += 1;
        }
        if i % 3 == 2 {
            // A run that fails (no such layer) after claiming OUTPUT.
            let mut failing = args.to_vec();
            failing.extend(["--layer", "no-such-layer"]);
            let out = atlasnorm(&failing);
            assert!(!out.status.success());
            let left = names(dir.path());
            let mut allowed = before.clone();
            if !allowed.iter().any(|n| n == out_name) && target.exists() {
                allowed.push(out_name.to_string()); // the killed run had committed
                allowed.sort();
            }
            assert_eq!(left, allowed, "after a failing run (kill at {delay:?})");
            if target.exists() && old_data.is_some() {
                let now = x_data(&target);
                assert!(
                    Some(&now) == old_data.as_ref() || now == expected,
                    "OUTPUT is neither the old nor the new output"
                );
            }
        }
        let out = atlasnorm(&args);
        assert!(
            out.status.success(),
            "the next run failed (kill at {delay:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut with_output = before.clone();
        if !with_output.iter().any(|n| n == out_name) {
            with_output.push(out_name.to_string());
            with_output.sort();
        }
        assert_eq!(names(dir.path()), with_output, "kill at {delay:?}");
        if let Some(d) = differ(&x_data(&target), &expected) {
            panic!("the next run's output (kill at {delay:?}): {d}");
        }
        if i + 1 == points {
            anndata_reads(&target);
        }
        remove(&target);
        if old_data.is_some() {
            // Back to the old output for the next kill.
            copy(&old_copy, &target);
        }
    }
    eprintln!("{out_name} (replacing: {old_output}), run of {took:?}: {moments:?}");
    assert!(
        moments.while_writing >= 3,
        "too few kills hit a run in progress: {moments:?}"
    );
}

#[test]
fn kill_9_at_any_moment_then_the_next_run_h5ad() {
    kill_sweep(&inputs().big, "out.h5ad", false);
}

#[test]
fn kill_9_at_any_moment_then_the_next_run_h5ad_replacing() {
    kill_sweep(&inputs().big, "out.h5ad", true);
}

#[test]
fn kill_9_at_any_moment_then_the_next_run_zarr() {
    kill_sweep(&inputs().big, "out.zarr", false);
}

#[test]
fn kill_9_at_any_moment_then_the_next_run_zarr_replacing() {
    kill_sweep(&inputs().big, "out.zarr", true);
}

/// A missing INPUT is named with the problem alone (it once read `IN: /: no such file`).
#[test]
fn missing_input_is_named_plainly() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["absent.h5ad", "absent.zarr"] {
        let input = dir.path().join(name);
        let out = atlasnorm(&["normalize", p(&input), p(&dir.path().join("o.h5ad"))]);
        let line = one_plain_error(&out);
        assert_eq!(line, format!("{}: no such file", input.display()));
    }
}
