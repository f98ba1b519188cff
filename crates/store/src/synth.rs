//! Realistic synthetic UMI counts: multinomial counts over heavy-tailed gene weights with a
//! log-normal library size per cell, which reproduces the look of 10x data (most stored
//! values are 1, a few hundred to a few thousand genes per cell).
//!
//! Generation is deterministic for a seed whatever the thread count: each cell draws from
//! its own generator seeded by (seed, cell).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::options::format_bytes;
use crate::store::h5ad::{AnnDataWriter, Compression};

/// A dataset shape to imitate (DESIGN.md §5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub cells: u64,
    pub genes: u64,
    /// Median UMIs (or reads) per cell.
    pub median_umis: f64,
}

pub const PROFILES: &[Profile] = &[
    Profile {
        name: "demo",
        cells: 2_000,
        genes: 3_000,
        median_umis: 1_500.0,
    },
    Profile {
        name: "pbmc68k",
        cells: 68_579,
        genes: 32_738,
        median_umis: 1_300.0,
    },
    Profile {
        name: "gastrulation",
        cells: 139_331,
        genes: 29_452,
        median_umis: 8_000.0,
    },
    Profile {
        name: "splitseq",
        cells: 156_049,
        genes: 26_894,
        median_umis: 1_500.0,
    },
    Profile {
        name: "tms_ss2",
        cells: 110_824,
        genes: 22_966,
        median_umis: 500_000.0,
    },
    Profile {
        name: "pbmc200k",
        cells: 200_000,
        genes: 33_538,
        median_umis: 5_000.0,
    },
    Profile {
        name: "heart_adult",
        cells: 486_134,
        genes: 33_538,
        median_umis: 2_500.0,
    },
    Profile {
        name: "atlas",
        cells: 2_000_000,
        genes: 33_538,
        median_umis: 2_500.0,
    },
];

/// Spread of log library sizes between cells.
const LIBRARY_SIGMA: f64 = 0.5;
/// Spread of log gene weights: heavy-tailed expression, a few genes very high. Tuned on the
/// 10x PBMC matrix in ../shared/data/real (Zheng 2017): at its 1,512 median UMIs and 16,791 genes
/// this gives ~600 genes a cell and ~67% of values equal to 1 (real: 594 and 0.68).
const GENE_SIGMA: f64 = 2.8;
/// Cells generated per parallel work unit.
const CELLS_PER_UNIT: usize = 2048;

/// What `atlasnorm synth` generates (its command-line arguments with the `clap` feature).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct SynthArgs {
    /// Output path (.h5ad).
    pub output: PathBuf,
    /// Dataset shape to imitate: demo, pbmc68k, gastrulation, splitseq, tms_ss2, pbmc200k,
    /// heart_adult, atlas.
    #[cfg_attr(feature = "clap", arg(long, default_value = "demo"))]
    pub profile: String,
    /// Number of cells (overrides the profile).
    #[cfg_attr(feature = "clap", arg(long))]
    pub cells: Option<u64>,
    /// Number of genes (overrides the profile).
    #[cfg_attr(feature = "clap", arg(long))]
    pub genes: Option<u64>,
    /// Median UMIs per cell (overrides the profile).
    #[cfg_attr(feature = "clap", arg(long))]
    pub umis: Option<f64>,
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0))]
    pub seed: u64,
    /// Output compression: none, gzip (level 4, as anndata) or lzf.
    #[cfg_attr(feature = "clap", arg(long, default_value = "none"))]
    pub compression: String,
    /// Replace an existing output.
    #[cfg_attr(feature = "clap", arg(long))]
    pub force: bool,
}

/// Counts of one cell: gene positions ascending, counts > 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cell {
    pub genes: Vec<u32>,
    pub counts: Vec<u32>,
}

/// The sampler shared by all cells: Walker's alias table over the gene weights.
pub struct Generator {
    seed: u64,
    library: LogNormal<f64>,
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Generator {
    pub fn new(genes: u64, median_umis: f64, seed: u64) -> Result<Self> {
        if genes == 0 || genes > u64::from(u32::MAX) {
            return Err(Error::Options(format!(
                "synth: {genes} genes is not a usable count"
            )));
        }
        if median_umis.is_nan() || median_umis < 1.0 {
            return Err(Error::Options(format!(
                "synth: median UMIs {median_umis} must be >= 1"
            )));
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let gene_dist = LogNormal::new(0.0, GENE_SIGMA).expect("valid sigma");
        let weights: Vec<f64> = (0..genes).map(|_| gene_dist.sample(&mut rng)).collect();
        let (prob, alias) = alias_table(&weights);
        Ok(Generator {
            seed,
            library: LogNormal::new(median_umis.ln(), LIBRARY_SIGMA).expect("valid sigma"),
            prob,
            alias,
        })
    }

    /// Whether cells `0..cells` may hold more than `limit` stored values: estimated from a
    /// sample of cells, counted exactly when the estimate is within 25% of the limit.
    pub fn nnz_may_exceed(&self, cells: u64, limit: u64) -> bool {
        let step = (cells / 2000).max(1);
        let sample: Vec<u64> = (0..cells).step_by(step as usize).collect();
        let sampled: u64 = sample
            .par_iter()
            .map_init(Vec::new, |draws, &i| self.cell(i, draws).genes.len() as u64)
            .sum();
        let estimate = sampled as f64 / sample.len().max(1) as f64 * cells as f64;
        if estimate < 0.8 * limit as f64 {
            return false;
        }
        if estimate > 1.25 * limit as f64 {
            return true;
        }
        let exact: u64 = (0..cells)
            .into_par_iter()
            .map_init(Vec::new, |draws, i| self.cell(i, draws).genes.len() as u64)
            .sum();
        exact > limit
    }

    /// The counts of cell `index` (the same for a seed whatever else is generated).
    pub fn cell(&self, index: u64, draws: &mut Vec<u32>) -> Cell {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(
            self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
                ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let umis = self.library.sample(&mut rng).round().max(1.0) as usize;
        let n = self.prob.len();
        draws.clear();
        draws.extend((0..umis).map(|_| {
            let slot = rng.gen_range(0..n);
            if rng.gen::<f64>() < self.prob[slot] {
                slot as u32
            } else {
                self.alias[slot]
            }
        }));
        draws.sort_unstable();
        let mut cell = Cell::default();
        for &g in draws.iter() {
            if cell.genes.last() == Some(&g) {
                *cell.counts.last_mut().unwrap() += 1;
            } else {
                cell.genes.push(g);
                cell.counts.push(1);
            }
        }
        cell
    }

    /// Cells `range` generated in parallel, in order.
    pub fn cells(&self, range: std::ops::Range<u64>) -> Vec<Cell> {
        let starts: Vec<u64> = range.clone().step_by(CELLS_PER_UNIT).collect();
        starts
            .into_par_iter()
            .flat_map_iter(|start| {
                let end = (start + CELLS_PER_UNIT as u64).min(range.end);
                let mut draws = Vec::new();
                (start..end)
                    .map(move |i| self.cell(i, &mut draws))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Walker's alias method: O(1) draws from a discrete distribution.
fn alias_table(weights: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let n = weights.len();
    let sum: f64 = weights.iter().sum();
    let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / sum).collect();
    let mut alias = vec![0u32; n];
    let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
    while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
        alias[s] = l as u32;
        prob[l] -= 1.0 - prob[s];
        if prob[l] < 1.0 {
            large.pop();
            small.push(l);
        }
    }
    for i in large.into_iter().chain(small) {
        prob[i] = 1.0;
    }
    (prob, alias)
}

pub fn profile(name: &str) -> Result<Profile> {
    PROFILES
        .iter()
        .copied()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
            Error::Options(format!(
                "synth: unknown profile {name:?} (one of {})",
                names.join(", ")
            ))
        })
}

/// Summary statistics of generated cells, to compare with real data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub cells: u64,
    pub stored: u64,
    pub ones: u64,
    pub umis: u64,
}

impl Stats {
    pub fn add(&mut self, cell: &Cell) {
        self.cells += 1;
        self.stored += cell.counts.len() as u64;
        self.ones += cell.counts.iter().filter(|&&c| c == 1).count() as u64;
        self.umis += cell.counts.iter().map(|&c| c as u64).sum::<u64>();
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cells, {} stored values ({:.0} genes/cell, {:.0} UMIs/cell, {:.1}% of values = 1)",
            self.cells,
            self.stored,
            self.stored as f64 / self.cells.max(1) as f64,
            self.umis as f64 / self.cells.max(1) as f64,
            100.0 * self.ones as f64 / self.stored.max(1) as f64
        )
    }
}

/// `atlasnorm synth`: generates and writes the file; returns a one-line summary.
pub fn run(args: &SynthArgs) -> Result<String> {
    let started = Instant::now();
    let base = profile(&args.profile)?;
    let cells = args.cells.unwrap_or(base.cells);
    let genes = args.genes.unwrap_or(base.genes);
    let umis = args.umis.unwrap_or(base.median_umis);
    let generator = Generator::new(genes, umis, args.seed)?;
    let compression = match args.compression.as_str() {
        "none" => Compression::None,
        "gzip" => Compression::Gzip(4),
        "lzf" => Compression::Lzf,
        other => {
            return Err(Error::Options(format!(
                "synth: unknown compression {other:?} (none, gzip or lzf)"
            )))
        }
    };
    if args.output.exists() && !args.force {
        return Err(Error::output(
            &args.output,
            "already exists (use --force to replace it)",
        ));
    }
    let stats = write(&args.output, cells, genes, compression, &generator)?;
    let size = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(format!(
        "synth: wrote {} ({}): {stats} in {:.1} s",
        args.output.display(),
        format_bytes(size),
        started.elapsed().as_secs_f64()
    ))
}

/// Cells generated (in parallel) and written per step: bounds memory whatever the size.
const CELLS_PER_STEP: u64 = 32_768;

/// Writes `cells` × `genes` counts as an AnnData file with a CSR float32 X (integer counts, as
/// Cell Ranger's matrices come into anndata), int32 indices and int64 indptr when needed.
fn write(
    path: &Path,
    cells: u64,
    genes: u64,
    compression: Compression,
    generator: &Generator,
) -> Result<Stats> {
    let mut file = AnnDataWriter::create(path, cells, genes, compression, CHUNK_LEN)?;
    file.write_obs_index(&(0..cells).map(|i| format!("cell{i}")).collect::<Vec<_>>())?;
    file.write_var_index(&(0..genes).map(|i| format!("gene{i}")).collect::<Vec<_>>())?;
    // scipy (and so anndata) stores indices and indptr as int32 unless nnz passes 2^31 - 1,
    // then both as int64; a mixed pair is not something anndata writes.
    let index_dtype = if generator.nnz_may_exceed(cells, i32::MAX as u64) {
        DType::I64
    } else {
        DType::I32
    };
    let mut stats = Stats::default();
    {
        let mut x = file.csr_x(DType::F32, index_dtype, index_dtype)?;
        x.append_indptr(&[0])?;
        let mut offset = 0i64;
        for start in (0..cells).step_by(CELLS_PER_STEP as usize) {
            let batch = generator.cells(start..(start + CELLS_PER_STEP).min(cells));
            let mut indptr = Vec::with_capacity(batch.len());
            let mut indices = Vec::new();
            let mut data = Vec::new();
            for cell in &batch {
                stats.add(cell);
                offset += cell.genes.len() as i64;
                indptr.push(offset);
                indices.extend(cell.genes.iter().map(|&g| g as i64));
                data.extend(cell.counts.iter().map(|&c| c as f32));
            }
            x.append_indptr(&indptr)?;
            x.append_indices(&indices)?;
            x.append_data(&NumVec::F32(data))?;
        }
        x.finish()?;
    }
    file.finish()?;
    Ok(stats)
}

/// Elements per chunk of X's arrays: h5py's choice for arrays of this kind of size.
const CHUNK_LEN: u64 = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_deterministic_and_sorted() {
        let g = Generator::new(500, 800.0, 7).unwrap();
        let a = g.cells(0..300);
        let b = g.cells(0..300);
        assert_eq!(a, b);
        let mut draws = Vec::new();
        assert_eq!(g.cell(123, &mut draws), a[123]);
        for c in &a {
            assert!(c.genes.windows(2).all(|w| w[0] < w[1]));
            assert!(c.genes.iter().all(|&x| x < 500));
        }
    }

    /// ../shared/data/real/README.md: fastTopics_pbmc_facs_zheng2017.h5ad (10x PBMC, pbmc68k's
    /// chemistry) has 16,791 genes, a median of 1,512 UMIs and 594 genes a cell, 68% ones.
    #[test]
    fn statistics_match_the_real_10x_pbmc_matrix() {
        let g = Generator::new(16_791, 1_512.0, 11).unwrap();
        let mut stats = Stats::default();
        let mut genes_per_cell: Vec<usize> = Vec::new();
        for c in g.cells(0..2000) {
            stats.add(&c);
            genes_per_cell.push(c.genes.len());
        }
        genes_per_cell.sort_unstable();
        let median_genes = genes_per_cell[genes_per_cell.len() / 2] as f64;
        let ones = stats.ones as f64 / stats.stored as f64;
        assert!(
            (median_genes / 594.0 - 1.0).abs() < 0.15,
            "{median_genes} genes/cell: {stats}"
        );
        assert!((ones - 0.68).abs() < 0.04, "{ones} ones: {stats}");
    }

    #[test]
    fn statistics_look_like_umi_data() {
        let g = Generator::new(20_000, 1_300.0, 1).unwrap();
        let mut stats = Stats::default();
        for c in g.cells(0..500) {
            stats.add(&c);
        }
        let ones = stats.ones as f64 / stats.stored as f64;
        assert!((0.5..0.9).contains(&ones), "{stats}");
    }
}
