//! Micro-benchmarks of the pieces of the L2D path, on the shipped model and memory blob
//! (`cargo bench`): the read-out forward pass against the full one, tokenization against assembled prompt ids, distance
//! scoring per dtype, bounded-heap top-K (3,496 and 10⁶ items), L2D-L aggregation, blob parsing and the representations
//! built from it. Prints medians and
//! throughputs; speed goals are figures here, never timed assertions. The whole-path comparison
//! with beam search is `l2d bench`; the browser's is `www/bench.html`.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use l2d::latent::blob::Blob;
use l2d::latent::score::{top_k, DType};
use l2d::model::{Model, Pass};
use l2d::serve::recommend::load_blob;

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
    let blob = Blob::read_file(&dir.join("memory.blob")).expect("blob parses");
    let (catalog, mut reps) =
        load_blob(&model, blob.clone(), "memory.blob").expect("blob fits the model");
    let manifest = l2d::serve::manifest::Manifest::from_json(
        &std::fs::read(dir.join("manifest.json")).expect("shipped manifest"),
        "manifest.json",
    )
    .expect("manifest parses");
    reps.apply_scoring(&manifest.scoring)
        .expect("the manifest's scoring applies");
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
    let mut int8 = Model::load_dir(&dir).expect("shipped model");
    int8.net
        .set_weights(l2d::model::Weights::Int8)
        .expect("int8 weights");
    let full_int8 = median_ms(60, || {
        black_box(int8.net.forward(&input, None, Pass::Infer).unwrap());
    });
    let read_out_int8 = median_ms(60, || {
        black_box(int8.net.forward_rows(&input, None, &[last]).unwrap());
    });
    println!("tokenize prompt           {tokenize:8.3} ms");
    println!("assemble prompt ids       {assemble:8.3} ms  (titles tokenized once, kept)");
    println!("forward, every position   {full:8.3} ms");
    println!(
        "forward, read-out row     {read_out:8.3} ms  ({:.0}% less)",
        100.0 * (1.0 - read_out / full)
    );
    println!("forward, every position   {full_int8:8.3} ms  int8 weights");
    println!("forward, read-out row     {read_out_int8:8.3} ms  int8 weights");

    // The layer product for a few rows (a click's new tokens, a beam step): the kernel the
    // forward pass uses up to SMALL_ROWS rows against candle's blocked product, each over
    // 12 different weights of one MLP projection's shape (7 MB, as a forward pass cycles
    // through its layers' weights: none is still in cache when it comes round again).
    let (inp, out) = (model.hidden_size(), 4 * model.hidden_size());
    let weights: Vec<Tensor> = (0..12)
        .map(|_| Tensor::randn(0f32, 0.05, (out, inp), &Device::Cpu).unwrap())
        .collect();
    let weight_values: Vec<Vec<f32>> = weights
        .iter()
        .map(|w| w.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    for rows in [1, 6, 10, l2d::model::SMALL_ROWS, 64, 80] {
        let x = Tensor::randn(0f32, 1.0, (rows, inp), &Device::Cpu).unwrap();
        let x_values = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let per_weight = weights.len() as f64;
        let blocked = median_ms(50, || {
            for w in &weights {
                black_box(x.matmul(&w.t().unwrap()).unwrap());
            }
        }) / per_weight;
        let kernel = median_ms(50, || {
            for w in &weight_values {
                black_box(l2d::kernel::linear_rows(&x_values, w, None, inp));
            }
        }) / per_weight;
        let quantized: Vec<l2d::kernel::QuantRows> = weight_values
            .iter()
            .map(|w| l2d::kernel::QuantRows::new(w, inp))
            .collect();
        let kernel_q = median_ms(50, || {
            for w in &quantized {
                black_box(l2d::kernel::linear_q(&x_values, w, None));
            }
        }) / per_weight;
        println!(
            "linear {rows:>2}×{inp}→{out}      {kernel:8.3} ms kernel, {blocked:8.3} ms candle matmul, {kernel_q:8.3} ms int8"
        );
    }
    // A click: the history grows by one item, the previous prompt's cache is extended.
    let previous = model.prompt_ids(&history[..history.len() - 1]).unwrap();
    let mut grown_ms: Vec<f64> = (0..60)
        .map(|_| {
            let mut encoder = l2d::model::QueryEncoder::new();
            encoder.encode(&model, &previous).unwrap();
            let start = Instant::now();
            black_box(encoder.encode(&model, &ids).unwrap());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    grown_ms.sort_by(f64::total_cmp);
    println!(
        "forward, grown by one     {:8.3} ms  ({} new tokens on a cache of {})",
        grown_ms[grown_ms.len() / 2],
        ids.len() - previous.len(),
        previous.len()
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
            reps.distances(&query, l2d::serve::recommend::Mode::Local { m: 10 }, &[])
                .unwrap(),
        );
    });
    println!("L2D-L M=10 aggregation    {local:8.3} ms");
    // The shipped default (the manifest's scoring): state distances, then the kernel sums.
    let states = reps.rows(l2d::serve::recommend::Mode::Density).unwrap();
    let to_states = median_ms(30, || {
        black_box(states.distances(&query).unwrap());
    });
    let density = median_ms(30, || {
        black_box(
            reps.distances(&query, l2d::serve::recommend::Mode::Density, &[])
                .unwrap(),
        );
    });
    println!(
        "memory state distances    {to_states:8.3} ms  ({} states, {:?})",
        states.rows(),
        states.dtype()
    );
    println!("density scoring, whole    {density:8.3} ms  (state distances + kernel sums)");
    let parse = median_ms(10, || {
        black_box(Blob::from_bytes(&blob_bytes).unwrap());
    });
    println!(
        "parse + verify blob       {parse:8.3} ms  ({:.0} MB/s)",
        blob_bytes.len() as f64 / parse / 1e3
    );
    let represent = median_ms(10, || {
        black_box(l2d::serve::recommend::Representations::from_blob(blob.clone()).unwrap());
    });
    println!(
        "blob → representations    {represent:8.3} ms  (norms were computed at parse; L2D-G means, cold vectors)"
    );
    let parts = blob.items_parts();
    let part_bytes: usize = parts.iter().map(Vec::len).sum();
    let items = median_ms(10, || {
        let mut reader = l2d::latent::blob::ItemsReader::new(blob.counts.len(), part_bytes);
        for part in &parts {
            reader.part("items", part).unwrap();
        }
        black_box(reader.finish(&blob.items_sha256).unwrap());
    });
    println!(
        "read + verify items parts {items:8.3} ms  ({:.0} MB/s)",
        part_bytes as f64 / items / 1e3
    );
}
