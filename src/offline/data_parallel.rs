//! Work split over threads: data-parallel training steps and the memory's forward passes.
//!
//! **Training.** A batch is split into one micro-batch per thread; each thread
//! runs the forward and backward pass of its micro-batch on its own, and the gradients are
//! summed before one optimizer step, so the update is one thread's up to the order of the sum.
//!
//! The order is fixed, so a given thread count is reproducible: micro-batch `i` of `N` holds
//! the batch's sequences `[i·⌈b/N⌉, (i+1)·⌈b/N⌉)` ([`micro_batches`]), its loss is weighted
//! by its share of the batch's loss positions, and each variable's gradient is
//! `((g₀ + g₁) + g₂) + …` in micro-batch order ([`Gradients::sum`]). The gradient norm sums
//! per-variable squares in the variables' (sorted) order. With one thread the step is the
//! single-thread step exactly.
//!
//! **The memory** ([`memory_shard`]): shard `i/n` runs as `T` sub-shards at once, sub-shard
//! `j` being shard `(i + n·j)/(n·T)`; together they cover exactly the batches of `i/n`, and
//! their rows are put back in sample order, so the states are the single pass's, byte for byte.
//!
//! The threads are a rayon pool of their own ([`Workers`]); candle's matrix products run their
//! own rayon splits inside it, so nested work shares the same threads instead of
//! oversubscribing the cores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::catalog::Catalog;
use crate::data::dataset::Sample;
use crate::error::{Error, Result};
use crate::latent::memory::Memory;
use crate::model::Model;
use crate::util::Shard;

/// The threads of a training run.
pub struct Workers {
    pool: rayon::ThreadPool,
}

impl Workers {
    /// A pool of `threads` threads (≥ 1).
    pub fn new(threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(Error::invalid("threads", "0 (expected at least 1)"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("l2d-train-{i}"))
            .build()
            .map_err(|e| Error::invalid("threads", format!("{threads}: {e}")))?;
        Ok(Workers { pool })
    }

    /// One thread per core of this machine ([`default_threads`]).
    pub fn every_core() -> Result<Self> {
        Self::new(default_threads())
    }

    /// How many threads the pool has.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` on the pool: every rayon call inside it uses these threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// Every core of this machine: the default of `--threads`.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The rule of the split: micro-batch `i` of `parts` holds `batch[i·⌈b/parts⌉ ..]` up to the
/// next one's start; fewer micro-batches when the batch has fewer items than `parts`.
pub fn micro_batches<T>(batch: &[T], parts: usize) -> Vec<&[T]> {
    if batch.is_empty() {
        return Vec::new();
    }
    batch.chunks(batch.len().div_ceil(parts.max(1))).collect()
}

/// What one micro-batch's forward pass gives: its mean loss over its loss positions (a
/// differentiable scalar) and how many positions that is.
pub struct MicroLoss {
    pub loss: Tensor,
    pub positions: usize,
}

/// Seconds of one step, by piece. The parallel pieces (batching, forward, backward) are the
/// slowest micro-batch's: the step waits for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTimes {
    /// Padding a micro-batch into input, row and label tensors.
    pub batching: f64,
    pub forward: f64,
    pub backward: f64,
    /// Summing the micro-batches' gradients and their norm (one thread per variable).
    pub gradient_sum: f64,
    /// The optimizer's update of every variable.
    pub optimizer: f64,
    /// The whole step, wall clock.
    pub step: f64,
}

impl StepTimes {
    /// The sum of two records (pieces add up over steps).
    pub fn add(&mut self, other: &StepTimes) {
        self.batching += other.batching;
        self.forward += other.forward;
        self.backward += other.backward;
        self.gradient_sum += other.gradient_sum;
        self.optimizer += other.optimizer;
        self.step += other.step;
    }

    /// The share of the step that ran on one thread whatever the pool (the gradient sum runs
    /// across variables, not micro-batches, so it counts here too; so does what no piece
    /// names: loss read-back, clipping, bookkeeping).
    pub fn serial_fraction(&self) -> f64 {
        let parallel = self.batching + self.forward + self.backward;
        ((self.step - parallel) / self.step.max(1e-12)).clamp(0.0, 1.0)
    }
}

/// The summed gradients of a step, aligned with the variables they were asked for.
pub struct Gradients {
    pub grads: Vec<Option<Tensor>>,
    /// Global L2 norm of the summed gradients.
    pub norm: f64,
    /// The batch's mean loss (position-weighted over the micro-batches).
    pub loss: f64,
    /// Loss positions of the batch.
    pub positions: usize,
}

impl Gradients {
    /// Forward and backward of `batch` split over the workers' threads: `positions(micro)`
    /// counts a micro-batch's loss positions (to weight it before the backward pass),
    /// `forward(i, micro)` computes its loss (timing its own batching into the first second
    /// of the returned pair). Gradients of `vars` are summed in micro-batch order.
    pub fn of_batch<T: Sync>(
        workers: &Workers,
        batch: &[T],
        vars: &[Var],
        positions: impl Fn(&[T]) -> usize + Sync,
        forward: impl Fn(usize, &[T]) -> Result<(f64, MicroLoss)> + Sync,
        times: &mut StepTimes,
    ) -> Result<Gradients> {
        // A micro-batch without loss positions adds nothing (and its mean loss would be 0/0).
        let parts: Vec<&[T]> = micro_batches(batch, workers.threads())
            .into_iter()
            .filter(|p| positions(p) > 0)
            .collect();
        let total: usize = parts.iter().map(|p| positions(p)).sum();
        if total == 0 {
            return Err(Error::invalid(
                "training batch",
                "no loss positions (every sequence is shorter than two tokens)",
            ));
        }
        let passes: Vec<Result<(GradStore, f64, usize, StepTimes)>> = workers.install(|| {
            parts
                .par_iter()
                .enumerate()
                .map(|(i, part)| {
                    let started = Instant::now();
                    let (batching, micro) = forward(i, part)?;
                    let forward_seconds = started.elapsed().as_secs_f64() - batching;
                    let share = micro.positions as f64 / total as f64;
                    let value = micro.loss.to_scalar::<f32>()? as f64;
                    let started = Instant::now();
                    let grads = (micro.loss * share)?.backward()?;
                    let piece = StepTimes {
                        batching,
                        forward: forward_seconds,
                        backward: started.elapsed().as_secs_f64(),
                        ..StepTimes::default()
                    };
                    Ok((
                        grads,
                        value * micro.positions as f64,
                        micro.positions,
                        piece,
                    ))
                })
                .collect()
        });
        let passes = passes.into_iter().collect::<Result<Vec<_>>>()?;
        for (_, _, _, piece) in &passes {
            times.batching = times.batching.max(piece.batching);
            times.forward = times.forward.max(piece.forward);
            times.backward = times.backward.max(piece.backward);
        }
        let started = Instant::now();
        let stores: Vec<&GradStore> = passes.iter().map(|p| &p.0).collect();
        let summed = Self::sum(workers, &stores, vars)?;
        times.gradient_sum = started.elapsed().as_secs_f64();
        let loss_sum: f64 = passes.iter().map(|p| p.1).sum();
        Ok(Gradients {
            norm: summed.1,
            grads: summed.0,
            loss: loss_sum / total as f64,
            positions: passes.iter().map(|p| p.2).sum(),
        })
    }

    /// The summed gradients as a store keyed by `vars` (the ones they were summed for), for an
    /// optimizer that reads one.
    pub fn store(&self, vars: &[Var]) -> GradStore {
        let mut store = GradStore::default();
        for (var, g) in vars.iter().zip(&self.grads) {
            if let Some(g) = g {
                store.insert(var.as_tensor(), g.clone());
            }
        }
        store
    }

    /// Each variable's gradient summed over `stores` in their order, one variable per task,
    /// and the global norm (squares summed in the variables' order).
    pub fn sum(
        workers: &Workers,
        stores: &[&GradStore],
        vars: &[Var],
    ) -> Result<(Vec<Option<Tensor>>, f64)> {
        let per_var: Vec<Result<(Option<Tensor>, f64)>> = workers.install(|| {
            vars.par_iter()
                .map(|var| {
                    let mut sum: Option<Tensor> = None;
                    for store in stores {
                        if let Some(g) = store.get(var.as_tensor()) {
                            sum = Some(match sum {
                                None => g.clone(),
                                Some(s) => (s + g)?,
                            });
                        }
                    }
                    let square = match &sum {
                        Some(g) => g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64,
                        None => 0.0,
                    };
                    Ok((sum, square))
                })
                .collect()
        });
        let mut grads = Vec::with_capacity(vars.len());
        let mut norm_sq = 0.0f64;
        for entry in per_var {
            let (g, square) = entry?;
            grads.push(g);
            norm_sq += square;
        }
        Ok((grads, norm_sq.sqrt()))
    }
}

/// The states of shard `shard` of `samples` ([`Memory::build_shard`]), its batches spread over
/// the workers' threads as sub-shards; `progress(done, total)` is called from this thread.
/// Returns the states in sample order and their positions in `samples`.
pub fn memory_shard(
    workers: &Workers,
    model: &Model,
    catalog: &Catalog,
    samples: &[&Sample],
    batch_size: usize,
    shard: Shard,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Memory, Vec<u32>)> {
    let threads = workers.threads();
    let subs: Vec<Shard> = (0..threads)
        .map(|j| Shard {
            index: shard.index + shard.count * j,
            count: shard.count * threads,
        })
        .collect();
    // Every sub-shard reads the same prompts: tokenize them once.
    let prompts = Memory::prompts(model, catalog, samples)?;
    let done: Vec<AtomicUsize> = subs.iter().map(|_| AtomicUsize::new(0)).collect();
    let totals: Vec<AtomicUsize> = subs.iter().map(|_| AtomicUsize::new(0)).collect();
    let parts = std::thread::scope(|scope| {
        let job = scope.spawn(|| {
            workers.install(|| {
                subs.par_iter()
                    .enumerate()
                    .map(|(j, &sub)| {
                        Memory::shard_of_prompts(
                            model,
                            samples,
                            &prompts,
                            batch_size,
                            sub,
                            &mut |d, t| {
                                done[j].store(d, Ordering::Relaxed);
                                totals[j].store(t, Ordering::Relaxed);
                            },
                        )
                    })
                    .collect::<Result<Vec<_>>>()
            })
        });
        let sum = |v: &[AtomicUsize]| v.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        while !job.is_finished() {
            std::thread::sleep(Duration::from_millis(200));
            progress(sum(&done), sum(&totals));
        }
        let parts = job
            .join()
            .expect("the memory's worker thread does not panic");
        progress(sum(&done), sum(&totals));
        parts
    })?;
    Ok(in_sample_order(model.hidden_size(), parts))
}

/// Sub-shards' rows as one shard, in the order of their positions.
fn in_sample_order(dim: usize, parts: Vec<(Memory, Vec<u32>)>) -> (Memory, Vec<u32>) {
    let mut rows: Vec<(u32, usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(k, (_, positions))| positions.iter().enumerate().map(move |(r, &p)| (p, k, r)))
        .collect();
    rows.sort_unstable();
    let mut states = Vec::with_capacity(rows.len() * dim);
    let mut items = Vec::with_capacity(rows.len());
    for &(_, k, r) in &rows {
        states.extend_from_slice(parts[k].0.state(r));
        items.push(parts[k].0.items[r]);
    }
    let positions = rows.iter().map(|&(p, _, _)| p).collect();
    (Memory { dim, states, items }, positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn micro_batches_follow_the_rule_and_cover_the_batch_once() {
        // (batch length, parts, sizes of the micro-batches)
        let cases: [(usize, usize, &[usize]); 6] = [
            (10, 1, &[10]),
            (10, 2, &[5, 5]),
            (11, 2, &[6, 5]),
            (10, 3, &[4, 4, 2]),
            (2, 4, &[1, 1]),
            (0, 2, &[]),
        ];
        for (len, parts, sizes) in cases {
            let batch: Vec<usize> = (0..len).collect();
            let micro = micro_batches(&batch, parts);
            let got: Vec<usize> = micro.iter().map(|m| m.len()).collect();
            assert_eq!(got, sizes, "{len} items in {parts} parts");
            let joined: Vec<usize> = micro.concat();
            assert_eq!(joined, batch, "{len} items in {parts} parts: order kept");
        }
    }

    /// The gradients of a weighted sum of squares, split over threads, equal the whole
    /// batch's on one thread (to rounding), and two runs with the same threads are identical.
    #[test]
    fn split_gradients_equal_the_whole_batch_and_repeat_exactly() {
        let dev = Device::Cpu;
        let w = Var::from_vec(vec![0.5f32, -1.0, 2.0], 3, &dev).unwrap();
        let b = Var::from_vec(vec![0.1f32], 1, &dev).unwrap();
        let vars = vec![b.clone(), w.clone()];
        let batch: Vec<Vec<f32>> = (0..7)
            .map(|i| vec![i as f32, 1.0 - i as f32, 0.25 * i as f32])
            .collect();
        let run = |threads: usize| {
            let workers = Workers::new(threads).unwrap();
            let mut times = StepTimes::default();
            Gradients::of_batch(
                &workers,
                &batch,
                &vars,
                |part: &[Vec<f32>]| part.len(),
                |_, part: &[Vec<f32>]| {
                    let rows: Vec<f32> = part.concat();
                    let x = Tensor::from_vec(rows, (part.len(), 3), &dev)?;
                    let y = x.broadcast_mul(&w.as_tensor().unsqueeze(0)?)?.sum(1)?;
                    let y = y.broadcast_add(b.as_tensor())?;
                    Ok((
                        0.0,
                        MicroLoss {
                            loss: y.sqr()?.mean_all()?,
                            positions: part.len(),
                        },
                    ))
                },
                &mut times,
            )
            .unwrap()
        };
        let flat = |g: &Gradients| -> Vec<f32> {
            g.grads
                .iter()
                .flat_map(|t| t.as_ref().unwrap().to_vec1::<f32>().unwrap())
                .collect()
        };
        let one = run(1);
        for threads in [2, 3] {
            let split = run(threads);
            assert_eq!(split.positions, 7);
            for (a, b) in flat(&one).iter().zip(flat(&split)) {
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                    "{threads}: {a} vs {b}"
                );
            }
            assert!((one.loss - split.loss).abs() < 1e-5, "{threads}");
            assert!((one.norm - split.norm).abs() < 1e-4, "{threads}");
            assert_eq!(flat(&split), flat(&run(threads)), "{threads}: repeatable");
        }
    }

    #[test]
    fn sub_shards_are_put_back_in_sample_order() {
        let part = |positions: &[u32]| {
            let memory = Memory {
                dim: 2,
                states: positions
                    .iter()
                    .flat_map(|&p| [p as f32, -(p as f32)])
                    .collect(),
                items: positions.iter().map(|&p| p * 10).collect(),
            };
            (memory, positions.to_vec())
        };
        let (memory, positions) = in_sample_order(2, vec![part(&[1, 4, 5]), part(&[0, 3])]);
        assert_eq!(positions, [0, 1, 3, 4, 5]);
        assert_eq!(memory.items, [0, 10, 30, 40, 50]);
        assert_eq!(memory.state(2), [3.0, -3.0]);
    }

    #[test]
    fn zero_threads_and_batches_without_loss_positions_are_refused() {
        assert!(Workers::new(0).is_err());
        let workers = Workers::new(1).unwrap();
        let batch = [(); 3];
        let err = Gradients::of_batch(
            &workers,
            &batch,
            &[],
            |_| 0,
            |_, _| unreachable!("no forward without loss positions"),
            &mut StepTimes::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("no loss positions"), "{err}");
    }
}
