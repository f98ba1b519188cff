mod h5ad_common;

use std::path::Path;

#[test]
fn inspect_real_file() {
    let p = Path::new("/work/shared/data/real/harmony_pbmc_stim_kang2018.h5ad");
    if !p.exists() {
        return;
    }
    let t = atlasnorm::inspect::inspect(p).unwrap();
    println!("{t}");
}
