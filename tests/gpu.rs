//! The wgpu scorer (natively on Mesa lavapipe, a software Vulkan adapter) gives the CPU
//! scorer's distances and top-K, on random data and on the shipped default blob.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use l2d::gpu::GpuScorer;
use l2d::score::{top_k, ItemMatrix};
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
        // The same ranking: at every position the two lists hold the same item, or two items
        // whose distances differ by no more than the rounding tolerance (a near-tie that f32
        // summation order may flip).
        let cpu_top: Vec<u32> = top_k(&cpu_d, k, &[]).into_iter().map(|(i, _)| i).collect();
        let gpu_top: Vec<u32> = top_k(gpu_d, k, &[]).into_iter().map(|(i, _)| i).collect();
        for (a, b) in cpu_top.iter().zip(&gpu_top) {
            let (da, db) = (cpu_d[*a as usize], cpu_d[*b as usize]);
            assert!(
                a == b || (da - db).abs() <= 1e-3 * da.abs().max(1.0),
                "rank differs beyond a near-tie: {cpu_top:?} vs {gpu_top:?}"
            );
        }
    }
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
    let catalog = l2d::catalog::Catalog::new(blob.items.clone(), "global.blob").unwrap();
    let gpu = scorer(&blob.matrix);
    let mut rng = StdRng::seed_from_u64(6);
    let queries: Vec<Vec<f32>> = (0..5)
        .map(|_| {
            let history: Vec<u32> = (0..10)
                .map(|_| rng.random_range(0..catalog.len() as u32))
                .collect();
            l2d::recommend::query_state(&model, &catalog, &history).unwrap()
        })
        .collect();
    assert_same(&blob.matrix, &gpu, &queries, 20);
}
