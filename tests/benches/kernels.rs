//! Micro-benchmarks of the pieces of the L2D path, on the shipped model and memory blob
//! (`cargo bench`): the read-out forward pass against the full one, tokenization against assembled prompt ids, distance
//! scoring per dtype, bounded-heap top-K (3,496 and 10⁶ items), L2D-L aggregation and blob parsing. Prints medians and
//! throughputs; speed goals are figures here, never timed assertions. The whole-path comparison
//! with beam search is `l2d bench`; the browser's is `www/bench.html`.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use l2d::blob::Blob;
use l2d::model::{Model, Pass};
use l2d::recommend::load_blob;
use l2d::score::{top_k, DType};

/// Median wall time of `f` in milliseconds over `rounds` runs (after one warm-up).
fn median_ms(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[rounds / 2]
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let model = Model::load_dir(&dir).expect("shipped model");
    let blob_bytes = std::fs::read(dir.join("memory.blob")).expect("shipped memory blob");
    let blob = Blob::from_bytes(&blob_bytes).expect("blob parses");
    let (catalog, reps) =
        load_blob(&model, blob.clone(), "memory.blob").expect("blob fits the model");
    let history: Vec<&str> = catalog.items().take(10).map(|i| i.title).collect();
    let ids = model.prompt_ids(&history).expect("prompt");
    println!(
        "shipped model (hidden {}), {} items, {} memory states; prompt of {} tokens",
        model.hidden_size(),
        catalog.len(),
        blob.matrix.rows(),
        ids.len()
    );

    let tokenize = median_ms(200, || {
        black_box(model.tokenizer_prompt_ids(&history).unwrap());
    });
    let assemble = median_ms(200, || {
        black_box(model.prompt_ids(&history).unwrap());
    });
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let full = median_ms(60, || {
        black_box(model.net.forward(&input, None, Pass::Infer).unwrap());
    });
    let last = ids.len() - 1;
    let read_out = median_ms(60, || {
        black_box(model.net.forward_rows(&input, None, &[last]).unwrap());
    });
    println!("tokenize prompt           {tokenize:8.3} ms");
    println!("assemble prompt ids       {assemble:8.3} ms  (titles tokenized once, kept)");
    println!("forward, every position   {full:8.3} ms");
    println!(
        "forward, read-out row     {read_out:8.3} ms  ({:.0}% less)",
        100.0 * (1.0 - read_out / full)
    );

    let query = model.last_hidden(&history).unwrap();
    for dtype in [DType::F32, DType::F16, DType::I8] {
        let matrix = reps.global.to_dtype(dtype);
        let ms = median_ms(300, || {
            black_box(matrix.distances(&query).unwrap());
        });
        println!(
            "global distances {dtype:?}      {ms:8.3} ms  ({:.2} G item·dim/s)",
            (matrix.rows() * matrix.dim()) as f64 / ms / 1e6
        );
    }
    let distances = reps.global.distances(&query).unwrap();
    let select = median_ms(300, || {
        black_box(top_k(&distances, 20, &[]));
    });
    println!("top-20 of {} items      {select:8.3} ms", distances.len());
    // A million-item catalog's distances (seeded, with ties): selection alone.
    let mut state = 0x9e37_79b9_u64;
    let million: Vec<f32> = (0..1_000_000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / 1e4
        })
        .collect();
    let select = median_ms(30, || {
        black_box(top_k(&million, 20, &[]));
    });
    println!("top-20 of {} items   {select:8.3} ms", million.len());
    let local = median_ms(30, || {
        black_box(
            reps.distances(&query, l2d::recommend::Mode::Local { m: 10 })
                .unwrap(),
        );
    });
    println!("L2D-L M=10 aggregation    {local:8.3} ms");
    let parse = median_ms(10, || {
        black_box(Blob::from_bytes(&blob_bytes).unwrap());
    });
    println!(
        "parse + verify blob       {parse:8.3} ms  ({:.0} MB/s)",
        blob_bytes.len() as f64 / parse / 1e3
    );
}
