//! Which scorer ranks a query: the CPU, or WebGPU (natively wgpu, on a software adapter such as
//! lavapipe too). The same rule in the browser and natively, so the native tests check the
//! choice the page makes.
//!
//! `Backend::Auto` takes the GPU on a hardware adapter only: on a software one (SwiftShader,
//! lavapipe) scoring is slower than the CPU path (`node scripts/bench-browser.mjs` measures
//! both). A ranking by row distance alone selects its candidates on the GPU and reads those
//! back; the other rankings read back every row's distance and finish on the CPU. Every path
//! gives the CPU's items in the CPU's order.

use std::cell::RefCell;
use std::rc::Rc;

use crate::data::catalog::ItemIndex;
use crate::error::{Error, Result};
use crate::latent::aggregate::Mode;
use crate::latent::gpu::GpuScorer;
use crate::serve::recommend::{
    row_distances, top_from_nearest_rows, top_from_row_distances, Query, Representations,
};

/// Where a page (or a test) asks to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// WebGPU on a hardware adapter, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// WebGPU on any adapter, software ones too; an error without one.
    WebGpu,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "webgpu" => Ok(Self::WebGpu),
            other => Err(Error::invalid(
                "option `backend`",
                format!("expected \"auto\", \"cpu\" or \"webgpu\", got {other:?}"),
            )),
        }
    }
}

/// A ranked list and the scorer that made it: `"cpu"`, `"webgpu: <adapter>"`, or
/// `"popularity"` for an empty history.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub items: Vec<(ItemIndex, f32)>,
    pub backend: String,
}

enum GpuState {
    Unchecked,
    Unavailable(String),
    Ready {
        global: Rc<GpuScorer>,
        local: Option<Rc<GpuScorer>>,
    },
}

/// The scorers of one set of representations: the CPU always; the GPU's opened on first use
/// (one for the global rows, one for the memory's states) and kept.
pub struct Scorers {
    gpu: RefCell<GpuState>,
}

impl Default for Scorers {
    fn default() -> Self {
        Self::new()
    }
}

impl Scorers {
    pub fn new() -> Self {
        Self {
            gpu: RefCell::new(GpuState::Unchecked),
        }
    }

    /// The top of `query` (from [`crate::serve::recommend::prepare_with`]) on the scorer
    /// `backend` chooses.
    pub async fn rank(
        &self,
        reps: &Representations,
        query: &Query,
        backend: Backend,
    ) -> Result<Ranked> {
        let Some(state) = &query.state else {
            return Ok(Ranked {
                items: top_from_row_distances(reps, query, None)?,
                backend: "popularity".into(),
            });
        };
        let scorer = match backend {
            Backend::Cpu => None,
            Backend::WebGpu => self.gpu_scorer(reps, query.mode).await,
            Backend::Auto => self
                .gpu_scorer(reps, query.mode)
                .await
                .filter(|scorer| !scorer.software),
        };
        let Some(scorer) = scorer else {
            if backend == Backend::WebGpu {
                let why = match &*self.gpu.borrow() {
                    GpuState::Unavailable(why) => why.clone(),
                    _ => "no adapter".into(),
                };
                return Err(Error::invalid(
                    "backend \"webgpu\"",
                    format!("requested but WebGPU is unavailable: {why}"),
                ));
            }
            let to_rows = row_distances(reps, query)?;
            return Ok(Ranked {
                items: top_from_row_distances(reps, query, to_rows)?,
                backend: "cpu".into(),
            });
        };
        let wanted = query.k + query.exclude.len();
        let nearest = if reps.ranks_by_row_distance(query.mode) {
            scorer.nearest(state, wanted).await?
        } else {
            None
        };
        let items = match nearest {
            Some(nearest) => top_from_nearest_rows(reps, query, nearest)?,
            None => {
                let to_rows = scorer
                    .distances(std::slice::from_ref(state))
                    .await?
                    .remove(0);
                top_from_row_distances(reps, query, Some(to_rows))?
            }
        };
        Ok(Ranked {
            items,
            backend: format!("webgpu: {}", scorer.adapter),
        })
    }

    /// The GPU scorer for `mode`, opened on first use; `None` where WebGPU is unavailable.
    async fn gpu_scorer(&self, reps: &Representations, mode: Mode) -> Option<Rc<GpuScorer>> {
        if matches!(&*self.gpu.borrow(), GpuState::Unchecked) {
            let state = match GpuScorer::new(&reps.global).await {
                Ok(Some(global)) => {
                    let local = match reps.local.as_ref() {
                        Some(l) => GpuScorer::new(l.states()).await.ok().flatten().map(Rc::new),
                        None => None,
                    };
                    GpuState::Ready {
                        global: Rc::new(global),
                        local,
                    }
                }
                Ok(None) => GpuState::Unavailable("no WebGPU adapter".into()),
                Err(e) => GpuState::Unavailable(e.to_string()),
            };
            *self.gpu.borrow_mut() = state;
        }
        match &*self.gpu.borrow() {
            GpuState::Ready { local, .. } if mode.uses_states() => local.clone(),
            GpuState::Ready { global, .. } => Some(global.clone()),
            _ => None,
        }
    }
}
