//! The wgpu scorer (natively on Mesa lavapipe, a software Vulkan adapter) gives the CPU
//! scorer's distances and top-K, on random data in every stored element type and on the
//! shipped default blob; its on-GPU selection gives the CPU's top-K.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use l2d::latent::gpu::GpuScorer;
use l2d::latent::gpu::MAX_GPU_K;
use l2d::latent::score::{top_k, top_k_of, DType, ItemMatrix};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn scorer(matrix: &ItemMatrix) -> GpuScorer {
    pollster::block_on(GpuScorer::new(matrix))
        .expect("wgpu device")
        .expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)")
}

fn assert_same(matrix: &ItemMatrix, gpu: &GpuScorer, queries: &[Vec<f32>], k: usize) {
    let on_gpu = pollster::block_on(gpu.distances(queries)).unwrap();
    assert_eq!(on_gpu.len(), queries.len());
    for (q, gpu_d) in queries.iter().zip(&on_gpu) {
        let cpu_d = matrix.distances(q).unwrap();
        assert_eq!(cpu_d.len(), gpu_d.len());
        for (a, b) in cpu_d.iter().zip(gpu_d) {
            assert!(
                (a.is_infinite() && b.is_infinite()) || (a - b).abs() <= 1e-3 * a.abs().max(1.0),
                "{a} vs {b}"
            );
        }
        assert_same_ranking(&cpu_d, &top_k(&cpu_d, k, &[]), &top_k(gpu_d, k, &[]));
    }
}

/// The same ranking: at every position the two lists hold the same item, or two items whose
/// CPU distances differ by no more than the rounding tolerance (a near-tie that f32
/// summation order or int8 query rounding may flip).
fn assert_same_ranking(cpu_d: &[f32], cpu_top: &[(u32, f32)], gpu_top: &[(u32, f32)]) {
    assert_eq!(cpu_top.len(), gpu_top.len(), "{cpu_top:?} vs {gpu_top:?}");
    for ((a, _), (b, _)) in cpu_top.iter().zip(gpu_top) {
        let (da, db) = (cpu_d[*a as usize], cpu_d[*b as usize]);
        assert!(
            a == b
                || (da.is_infinite() && db.is_infinite())
                || (da - db).abs() <= 1e-3 * da.abs().max(1.0),
            "rank differs beyond a near-tie: {cpu_top:?} vs {gpu_top:?}"
        );
    }
}

/// Rows kept on the GPU in f32, f16 and (centred) int8 or int4, for dimensions that do and do not
/// fill whole 32-bit words, give the CPU's distances and top-K; the on-GPU selection gives the
/// CPU's top-K for every k up to its limit, with exclusions, and declines above it.
#[test]
fn every_stored_type_and_the_gpu_selection_equal_the_cpu() {
    let mut rng = StdRng::seed_from_u64(7);
    let cases = [
        (DType::F32, 37, 1500),
        // 1,501 rows: the f16 and int8 bytes end inside a word.
        (DType::F16, 37, 1501),
        (DType::F16, 64, 700),
        (DType::I8, 37, 1501),
        (DType::I8, 192, 2500),
        // int4 rows are unpacked to int8 for the GPU a block of 4,096 rows at a time: 5,000
        // rows span two blocks.
        (DType::I4, 37, 1501),
        (DType::I4, 192, 5000),
    ];
    for (dtype, dim, rows) in cases {
        let values: Vec<f32> = (0..rows * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let valid: Vec<bool> = (0..rows).map(|r| r % 13 != 0).collect();
        let matrix = ItemMatrix::from_f32(values, dim, valid)
            .unwrap()
            .to_dtype(dtype);
        let gpu = scorer(&matrix);
        let queries: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
            .collect();
        assert_same(&matrix, &gpu, &queries, 20);
        for q in &queries {
            let cpu_d = matrix.distances(q).unwrap();
            for (k, exclude) in [
                (1, vec![]),
                (20, vec![]),
                (20, vec![3, 5, 8]),
                (MAX_GPU_K, vec![]),
            ] {
                let candidates = pollster::block_on(gpu.nearest(q, k + exclude.len()))
                    .unwrap()
                    .expect("k within the GPU limit");
                assert!(
                    candidates.len() < rows,
                    "{dtype:?}: only candidates are read back ({} of {rows})",
                    candidates.len()
                );
                let on_gpu = top_k_of(candidates.into_iter(), k, &exclude);
                assert_same_ranking(&cpu_d, &top_k(&cpu_d, k, &exclude), &on_gpu);
            }
        }
        assert!(pollster::block_on(gpu.nearest(&queries[0], MAX_GPU_K + 1))
            .unwrap()
            .is_none());
    }
}

/// When k reaches into the rows that rank last (+∞), the GPU keeps them in row order, as the
/// CPU does.
#[test]
fn gpu_selection_ranks_invalid_rows_last_in_row_order() {
    let values: Vec<f32> = (0..10 * 3).map(|x| x as f32 * 0.1).collect();
    let valid = vec![
        true, false, true, false, true, true, false, true, true, true,
    ];
    let matrix = ItemMatrix::from_f32(values, 3, valid).unwrap();
    let gpu = scorer(&matrix);
    let q = vec![0.5, 0.4, 0.3];
    let cpu = top_k(&matrix.distances(&q).unwrap(), 10, &[]);
    let on_gpu = top_k_of(
        pollster::block_on(gpu.nearest(&q, 10))
            .unwrap()
            .unwrap()
            .into_iter(),
        10,
        &[],
    );
    let ids = |v: &[(u32, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(ids(&on_gpu), ids(&cpu));
    assert_eq!(&ids(&on_gpu)[7..], &[1, 3, 6]);
}

#[test]
fn gpu_distances_equal_cpu_on_random_data() {
    let mut rng = StdRng::seed_from_u64(5);
    let (rows, dim) = (1000, 37);
    let values: Vec<f32> = (0..rows * dim)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let valid: Vec<bool> = (0..rows).map(|r| r % 17 != 0).collect();
    let matrix = ItemMatrix::from_f32(values, dim, valid).unwrap();
    let gpu = scorer(&matrix);
    eprintln!("adapter: {}", gpu.adapter);
    let queries: Vec<Vec<f32>> = (0..5)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    assert_same(&matrix, &gpu, &queries, 20);
}

#[test]
fn gpu_equals_cpu_on_the_default_blob() {
    let model = common::default_model();
    let blob = common::default_blob("global.blob");
    let catalog =
        l2d::data::catalog::Catalog::from_texts(blob.items.clone(), "global.blob").unwrap();
    let gpu = scorer(&blob.matrix);
    let mut rng = StdRng::seed_from_u64(6);
    let queries: Vec<Vec<f32>> = (0..5)
        .map(|_| {
            let history: Vec<u32> = (0..10)
                .map(|_| rng.random_range(0..catalog.len() as u32))
                .collect();
            l2d::serve::recommend::query_state(&model, &catalog, &history).unwrap()
        })
        .collect();
    assert_same(&blob.matrix, &gpu, &queries, 20);
}

/// The backend choice (`serve::backend`, the one the browser makes): `cpu` scores on the CPU,
/// `webgpu` on any adapter (lavapipe here) with the CPU's ranking, `auto` passes over a
/// software adapter to the CPU, an empty history is answered by popularity, and a backend name
/// the API does not know is an error naming it. Global (row distance alone, selected on the GPU)
/// and the shipped scoring (every row's distance read back).
#[test]
fn the_backend_choice_keeps_the_cpu_ranking_on_every_scorer() {
    use l2d::serve::backend::{Backend, Scorers};
    use l2d::serve::recommend::{load_blob, prepare, Mode, Request};

    let dir = common::default_dir();
    let model = common::default_model();
    let manifest = l2d::serve::manifest::Manifest::from_json(
        &std::fs::read(dir.join("manifest.json")).unwrap(),
        "manifest.json",
    )
    .unwrap();
    let (catalog, mut reps) =
        load_blob(&model, common::default_blob("memory.blob"), "memory.blob").unwrap();
    reps.apply_scoring(&manifest.scoring).unwrap();
    let scorers = Scorers::new();
    let shipped = manifest.scoring.mode().unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    for (mode, length) in [
        (Mode::Global, 10),
        (shipped, 10),
        (shipped, 3),
        (Mode::Global, 0),
    ] {
        let history: Vec<u32> = (0..length)
            .map(|_| rng.random_range(0..catalog.len() as u32))
            .collect();
        let request = Request {
            history: &history,
            mode,
            k: 20,
            exclude: &history,
        };
        let query = prepare(&model, &catalog, &reps, &request).unwrap();
        let rank = |backend| pollster::block_on(scorers.rank(&reps, &query, backend)).unwrap();
        let (cpu, auto, gpu) = (
            rank(Backend::Cpu),
            rank(Backend::Auto),
            rank(Backend::WebGpu),
        );
        if length == 0 {
            for ranked in [&cpu, &auto, &gpu] {
                assert_eq!(ranked.backend, "popularity");
                assert_eq!(
                    ranked.items.iter().map(|x| x.0).collect::<Vec<_>>(),
                    cpu.items.iter().map(|x| x.0).collect::<Vec<_>>()
                );
            }
            continue;
        }
        assert_eq!(cpu.backend, "cpu");
        assert_eq!(auto, cpu, "auto on a software adapter is the CPU path");
        assert!(gpu.backend.starts_with("webgpu: "), "{}", gpu.backend);
        assert_eq!(gpu.items.len(), cpu.items.len());
        for ((a, da), (b, db)) in cpu.items.iter().zip(&gpu.items) {
            assert!(
                a == b || (da - db).abs() <= 1e-3 * da.abs().max(1.0),
                "{mode:?}: {:?} vs {:?}",
                cpu.items,
                gpu.items
            );
        }
    }
    let unknown = "metal".parse::<Backend>().unwrap_err().to_string();
    assert!(
        unknown.contains("\"metal\"") && unknown.contains("backend"),
        "{unknown}"
    );
}
