//! The whole L2D path from a history to a top-K list: prompt → one forward pass → last hidden
//! state → distances to item representations (global or local) → top-K. Shared by the CLI
//! (`recommend`, `eval`, `bench`) and the browser.

use crate::data::catalog::{stateless_items, Catalog, ItemIndex};
use crate::data::prompt::history_titles;
use crate::error::{Error, Result};
use crate::latent::aggregate::{Geometry, LocalIndex, ScoreOptions};
use crate::latent::blob::{Blob, BlobKind};
use crate::latent::follows::Follows;
use crate::latent::memory::Memory;
use crate::latent::score::{top_k, top_k_of, ItemMatrix};
use crate::model::{Model, QueryEncoder};
use crate::serve::manifest::Scoring;

pub use crate::latent::aggregate::Mode;

/// Item representations: global vectors always, local index when memory states are available.
#[derive(Debug, Clone)]
pub struct Representations {
    /// L2D-G vectors, one row per item.
    pub global: ItemMatrix,
    /// Memory grouped by item, for L2D-L.
    pub local: Option<LocalIndex>,
    /// Memory states per item (0 = cold-start item, ranked last).
    pub counts: Vec<u32>,
    /// Transform applied to queries (memory was transformed the same way).
    pub geometry: Geometry,
    /// Items without memory states that [`Representations::fill_cold_from_titles`] gave a
    /// vector (in `global`); empty = the default rule, cold items ranked last.
    pub cold_filled: Vec<ItemIndex>,
    /// Popularity prior, adaptive threshold, density parameters and follows weight (a
    /// manifest's scoring).
    pub options: ScoreOptions,
    /// Which items followed which in the memory's samples, when the blob stores them (the
    /// `follows` scoring option).
    pub follows: Option<Follows>,
}

impl Representations {
    /// From a memory, with an optional latent-space treatment.
    pub fn from_memory(memory: &Memory, n_items: usize, geometry: Geometry) -> Result<Self> {
        let memory = geometry.apply_memory(memory);
        let local = LocalIndex::new(&memory, n_items)?;
        Ok(Representations {
            global: local.global_vectors()?,
            counts: local.counts(),
            local: Some(local),
            geometry,
            cold_filled: Vec::new(),
            options: ScoreOptions::default(),
            follows: None,
        })
    }

    /// From a blob (global vectors only, or a memory that serves both modes), with its
    /// cold-start vectors when it carries them.
    pub fn from_blob(blob: Blob) -> Result<Self> {
        let cold = blob
            .cold
            .as_ref()
            .map(|c| (blob.cold_items(), c.to_f32_values()));
        let mut reps = Self::from_blob_rows(blob)?;
        if let Some((items, vectors)) = cold {
            reps.set_cold(&items, &vectors)?;
        }
        Ok(reps)
    }

    /// The blob's rows and counts, moved (a million-item catalog is not copied).
    fn from_blob_rows(blob: Blob) -> Result<Self> {
        let follows = blob.follows;
        match blob.kind {
            BlobKind::Global => Ok(Representations {
                global: blob.matrix,
                local: None,
                counts: blob.counts,
                geometry: Geometry::plain(),
                cold_filled: Vec::new(),
                options: ScoreOptions::default(),
                follows,
            }),
            BlobKind::Memory => {
                let local = LocalIndex::from_grouped(blob.matrix, &blob.counts)?;
                Ok(Representations {
                    global: local.global_vectors()?,
                    local: Some(local),
                    counts: blob.counts,
                    geometry: Geometry::plain(),
                    cold_filled: Vec::new(),
                    options: ScoreOptions::default(),
                    follows,
                })
            }
        }
    }

    /// Applies a manifest's scoring options (popularity prior, adaptive local/global rule,
    /// density parameters, follows weight: refused when these representations have no follow
    /// weights); the mode itself is chosen per query.
    pub fn apply_scoring(&mut self, scoring: &Scoring) -> Result<()> {
        let options = scoring.options()?;
        if options.follows != 0.0 && self.follows.is_none() {
            return Err(Error::invalid(
                "scoring.follows",
                format!(
                    "{} needs a blob with follow weights (rebuild it with `l2d blobs`)",
                    options.follows
                ),
            ));
        }
        self.options = options;
        Ok(())
    }

    /// Number of items.
    pub fn n_items(&self) -> usize {
        self.counts.len()
    }

    /// Items without any memory state.
    pub fn cold_items(&self) -> usize {
        self.counts.iter().filter(|&&c| c == 0).count()
    }

    /// Ranking scores (smaller is better) from an (untransformed) query state to every item:
    /// squared distances, with a popularity prior `‖h − r‖ − w·ln(1 + states)`, or density
    /// scores; less the follows term of `history` (oldest first) when the scoring has one.
    pub fn distances(&self, query: &[f32], mode: Mode, history: &[ItemIndex]) -> Result<Vec<f32>> {
        let q = self.prepared_query(query);
        let to_rows = self.rows(mode)?.distances(&q)?;
        self.scores_from_row_distances(&q, to_rows, mode, history)
    }

    /// The query in the representations' geometry (what row distances are computed from).
    pub fn prepared_query(&self, query: &[f32]) -> Vec<f32> {
        let mut q = query.to_vec();
        self.geometry.apply(&mut q);
        q
    }

    /// The matrix whose rows a query is compared with in `mode`: item vectors (global) or
    /// memory states grouped by item (local). The CPU scorer and the GPU scorer both use it.
    pub fn rows(&self, mode: Mode) -> Result<&ItemMatrix> {
        match mode {
            Mode::Global => Ok(&self.global),
            Mode::Local { .. } | Mode::Density => Ok(self.local_index()?.states()),
        }
    }

    /// Item scores from a prepared query's squared distances to [`Representations::rows`]
    /// (computed on the CPU or the GPU): local or density aggregation when `mode` asks for it,
    /// then the popularity prior, then the follows term of `history` (the query's items,
    /// oldest first).
    pub fn scores_from_row_distances(
        &self,
        q: &[f32],
        to_rows: Vec<f32>,
        mode: Mode,
        history: &[ItemIndex],
    ) -> Result<Vec<f32>> {
        self.scores_with(q, to_rows, mode, &self.options, history)
    }

    /// [`Representations::scores_from_row_distances`] with other scoring options than this
    /// value's (one distance computation serves many scorings).
    pub fn scores_with(
        &self,
        q: &[f32],
        to_rows: Vec<f32>,
        mode: Mode,
        options: &ScoreOptions,
        history: &[ItemIndex],
    ) -> Result<Vec<f32>> {
        // Squared distance to an item's global row (cold and adaptive items); the scratch
        // row is made only by the modes that need it.
        let to_global = |i: usize, scratch: &mut [f32]| -> f32 {
            let row = self.global.row_into(i, scratch);
            row.iter().zip(q).map(|(r, x)| (r - x) * (r - x)).sum()
        };
        let squared = match mode {
            Mode::Global => to_rows,
            Mode::Local { m } => {
                let mut scratch = vec![0f32; self.global.dim()];
                let mut squared = self
                    .local_index()?
                    .distances_from_state_distances(q, &to_rows, m)?;
                // Cold items have no states to aggregate: their filled vector stands in; so
                // does the global vector of items with fewer than `local_min_states` states.
                for &i in &self.cold_filled {
                    squared[i as usize] = to_global(i as usize, &mut scratch);
                }
                // Off at 0 or 1 (no item has fewer states): no catalog-sized scan per query.
                if options.local_min_states > 1 {
                    for (i, &c) in self.counts.iter().enumerate() {
                        if c > 0 && c < options.local_min_states {
                            squared[i] = to_global(i, &mut scratch);
                        }
                    }
                }
                squared
            }
            Mode::Density => {
                let density = options.density.ok_or_else(|| {
                    Error::invalid(
                        "mode",
                        "density needs its parameters (the manifest's scoring.density)",
                    )
                })?;
                let mut scores = self.local_index()?.density_scores(&to_rows, density)?;
                // A cold item's filled vector counts as `cold_states` states.
                let mut scratch = vec![0f32; self.global.dim()];
                for &i in &self.cold_filled {
                    scores[i as usize] = density.cold_score(to_global(i as usize, &mut scratch));
                }
                scores
            }
        };
        let mut scores = match mode {
            Mode::Density => squared,
            _ => adjusted_distances(squared, &self.counts, options),
        };
        if let (Some(follows), true) = (&self.follows, options.follows != 0.0) {
            follows.apply(history, options.follows, &mut scores);
        }
        Ok(scores)
    }

    /// The cold-start rule "title": gives every item without memory states a vector instead of
    /// ranking it last. An item's *title state* is the query state of a one-item history
    /// holding it; over the items that have states, L2D-G vectors sit at a roughly constant
    /// offset from their title states (a train prompt's thought is about the *next* item), so a
    /// cold item's vector is its title state plus the mean offset. Costs one short forward pass
    /// per catalog item. Returns how many items were filled.
    pub fn fill_cold_from_titles(&mut self, model: &Model, catalog: &Catalog) -> Result<usize> {
        let n = self.n_items();
        if catalog.len() != n {
            return Err(Error::mismatch("catalog items", n, catalog.len()));
        }
        let dim = self.global.dim();
        let prompts: Vec<Vec<u32>> = catalog
            .items()
            .map(|item| model.prompt_ids(&[item.title]))
            .collect::<Result<_>>()?;
        let mut title_states = model.last_hidden_many(&prompts, 64, &mut |_, _| {})?;
        for state in title_states.chunks_mut(dim) {
            self.geometry.apply(state);
        }
        let values = self.global.to_f32_values();
        let warm: Vec<usize> = (0..n).filter(|&i| self.counts[i] > 0).collect();
        if warm.is_empty() {
            return Err(Error::invalid(
                "cold start",
                "no item has memory states to learn the title offset from",
            ));
        }
        let mut offset = vec![0f64; dim];
        for &i in &warm {
            for d in 0..dim {
                offset[d] += f64::from(values[i * dim + d] - title_states[i * dim + d]);
            }
        }
        let cold = stateless_items(&self.counts);
        let mut vectors = Vec::with_capacity(cold.len() * dim);
        for &i in &cold {
            let i = i as usize;
            vectors.extend(
                (0..dim)
                    .map(|d| title_states[i * dim + d] + (offset[d] / warm.len() as f64) as f32),
            );
        }
        self.set_cold(&cold, &vectors)?;
        Ok(cold.len())
    }

    /// Gives `items` (without memory states) these vectors (row-major, in the representations'
    /// geometry) as their global rows; local mode uses them too.
    pub fn set_cold(&mut self, items: &[ItemIndex], vectors: &[f32]) -> Result<()> {
        let dim = self.global.dim();
        if vectors.len() != items.len() * dim {
            return Err(Error::mismatch(
                "cold-start vectors",
                format!("{} × {dim} values", items.len()),
                vectors.len(),
            ));
        }
        let mut values = self.global.to_f32_values();
        let mut valid = self.global.valid().to_vec();
        for (k, &i) in items.iter().enumerate() {
            let i = i as usize;
            if self.counts.get(i) != Some(&0) {
                return Err(Error::invalid(
                    "cold-start vectors",
                    format!("item #{i} has memory states (or is not in the catalog)"),
                ));
            }
            values[i * dim..(i + 1) * dim].copy_from_slice(&vectors[k * dim..(k + 1) * dim]);
            valid[i] = true;
        }
        self.global = ItemMatrix::from_f32(values, dim, valid)?.to_layout_of(&self.global);
        self.cold_filled = items.to_vec();
        Ok(())
    }

    /// The cold-start vectors set by [`Representations::fill_cold_from_titles`] or a blob, one
    /// row per item without memory states in catalog order (what a blob stores), if any.
    pub fn cold_vectors(&self) -> Result<Option<ItemMatrix>> {
        if self.cold_filled.is_empty() {
            return Ok(None);
        }
        let dim = self.global.dim();
        let mut scratch = vec![0f32; dim];
        let mut values = Vec::with_capacity(self.cold_filled.len() * dim);
        for &i in &self.cold_filled {
            values.extend_from_slice(self.global.row_into(i as usize, &mut scratch));
        }
        Ok(Some(ItemMatrix::from_f32(
            values,
            dim,
            vec![true; self.cold_filled.len()],
        )?))
    }

    /// L2D-L scores for several M at once (the query-to-state distances are computed once).
    pub fn local_scores(
        &self,
        query: &[f32],
        ms: &[usize],
        history: &[ItemIndex],
    ) -> Result<Vec<Vec<f32>>> {
        let q = self.prepared_query(query);
        let to_states = self.local_index()?.states().distances(&q)?;
        ms.iter()
            .map(|&m| {
                self.scores_from_row_distances(&q, to_states.clone(), Mode::Local { m }, history)
            })
            .collect()
    }

    fn local_index(&self) -> Result<&LocalIndex> {
        self.local.as_ref().ok_or_else(|| {
            Error::invalid(
                "mode",
                "local aggregation needs memory states (a memory blob), this blob holds global vectors only",
            )
        })
    }

    /// The `k` best items of `scores` (from [`Representations::distances`] or
    /// [`Representations::scores_from_row_distances`] in `mode`), leaving out `exclude`, each
    /// with its [`Representations::display_distance`]: what a user is shown.
    pub fn top(
        &self,
        scores: &[f32],
        mode: Mode,
        k: usize,
        exclude: &[ItemIndex],
    ) -> Vec<(ItemIndex, f32)> {
        top_k(scores, k, exclude)
            .into_iter()
            .map(|(i, d)| (i, self.display_distance(d, mode)))
            .collect()
    }

    /// Whether `mode` ranks items by their row's distance alone (L2D-G without a popularity
    /// prior or follows term): then the rows nearest to the query are the ranking
    /// ([`top_from_nearest_rows`]).
    pub fn ranks_by_row_distance(&self, mode: Mode) -> bool {
        mode == Mode::Global && !self.options.adjusts_distance()
    }

    /// A ranking score in `mode` as a distance for display: `‖h − r‖` without a prior or
    /// follows term, the adjusted score with one, the density score as it is.
    pub fn display_distance(&self, score: f32, mode: Mode) -> f32 {
        if !self.options.adjusts_distance() && mode != Mode::Density {
            score.sqrt()
        } else {
            score
        }
    }
}

/// Ranking scores from squared distances when `options` adjust them (a popularity prior `w`
/// or a follows term): `‖h − r‖ − w·ln(1 + states)`, the follows term subtracted later;
/// unchanged squared distances otherwise.
fn adjusted_distances(mut squared: Vec<f32>, counts: &[u32], options: &ScoreOptions) -> Vec<f32> {
    if options.adjusts_distance() {
        let weight = options.popularity_prior;
        for (d, &c) in squared.iter_mut().zip(counts) {
            *d = d.sqrt() - weight * (1.0 + c as f32).ln();
        }
    }
    squared
}

/// The model input state for a history of items.
pub fn query_state(model: &Model, catalog: &Catalog, history: &[ItemIndex]) -> Result<Vec<f32>> {
    model.last_hidden(&history_titles(catalog, history))
}

/// The catalog and item representations of a blob, after checking it was built from `model`
/// (fingerprint and dimension) and its items parts (the titles prompts are made of) were read.
/// What `l2d recommend` and the browser load.
pub fn load_blob(
    model: &Model,
    mut blob: Blob,
    source: &str,
) -> Result<(Catalog, Representations)> {
    blob.check_model(&model.fingerprint, model.hidden_size())?;
    if blob.counts.is_empty() {
        return Err(Error::Empty {
            what: format!("catalog of {source}"),
            detail: ": the blob has no items to recommend".into(),
        });
    }
    if blob.items.len() != blob.counts.len() {
        return Err(Error::invalid(
            source,
            "its ids and titles (the items parts next to it) were not read",
        ));
    }
    let catalog = Catalog::from_texts(std::mem::take(&mut blob.items), source)?;
    Ok((catalog, Representations::from_blob(blob)?))
}

/// The `k` items with the most memory states, leaving out `exclude`: the answer for an empty
/// history (there is no thought to decode).
pub fn popular(reps: &Representations, k: usize, exclude: &[ItemIndex]) -> Vec<ItemIndex> {
    let excluded = crate::latent::score::exclusion_mask(reps.n_items(), exclude);
    crate::data::catalog::popularity_ranking(&reps.counts, reps.n_items())
        .into_iter()
        .filter(|&i| !excluded[i as usize])
        .take(k)
        .collect()
}

/// A history made ready for scoring by [`prepare`]: what [`top_from_row_distances`] needs besides the
/// distances to [`Representations::rows`].
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The history items the prompt used (its last [`crate::data::prompt::MAX_HISTORY`]).
    pub history: Vec<ItemIndex>,
    /// The query state in the representations' geometry; `None` for an empty history (then
    /// the answer is [`popular`]).
    pub state: Option<Vec<f32>>,
    /// Decoding mode.
    pub mode: Mode,
    /// How many items to return.
    pub k: usize,
    /// Items never returned (e.g. the history).
    pub exclude: Vec<ItemIndex>,
}

/// What a caller asks of the online path: a history (oldest first), the decoding mode, how
/// many items, and items never to return (e.g. the history itself).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request<'a> {
    /// History items, oldest first (truncated to the prompt's window by [`prepare`]).
    pub history: &'a [ItemIndex],
    /// Decoding mode.
    pub mode: Mode,
    /// How many items to return.
    pub k: usize,
    /// Items never returned.
    pub exclude: &'a [ItemIndex],
}

/// Step 1 of the online path: truncates the history, runs the one forward pass and puts the
/// state into the representations' geometry (a mode the representations cannot serve fails
/// at step 2).
pub fn prepare(
    model: &Model,
    catalog: &Catalog,
    reps: &Representations,
    request: &Request,
) -> Result<Query> {
    prepare_with(model, catalog, reps, request, None)
}

/// [`prepare`] through a session's [`QueryEncoder`]: a history grown by a click reuses the
/// previous prompt's key/value cache, a repeated one its memoized state (the same state as a
/// full forward pass within float rounding).
pub fn prepare_with(
    model: &Model,
    catalog: &Catalog,
    reps: &Representations,
    request: &Request,
    encoder: Option<&mut QueryEncoder>,
) -> Result<Query> {
    let history = crate::data::prompt::truncate_history(request.history).to_vec();
    let state = match (history.is_empty(), encoder) {
        (true, _) => None,
        (false, None) => Some(query_state(model, catalog, &history)?),
        (false, Some(encoder)) => {
            let ids = model.history_prompt_ids(catalog, &history)?;
            Some(encoder.encode(model, &ids)?.0)
        }
    }
    .map(|state| reps.prepared_query(&state));
    Ok(Query {
        history,
        state,
        mode: request.mode,
        k: request.k,
        exclude: request.exclude.to_vec(),
    })
}

/// Step 2 on the CPU: squared distances from the query state to [`Representations::rows`]
/// (the browser may compute the same on the GPU instead); `None` for an empty history.
pub fn row_distances(reps: &Representations, query: &Query) -> Result<Option<Vec<f32>>> {
    query
        .state
        .as_ref()
        .map(|q| reps.rows(query.mode)?.distances(q))
        .transpose()
}

/// Step 3: the top-`k` items with display distances from the row distances (local
/// aggregation, prior, exclusions), or [`popular`] items (distance NaN) for an empty history.
pub fn top_from_row_distances(
    reps: &Representations,
    query: &Query,
    row_distances: Option<Vec<f32>>,
) -> Result<Vec<(ItemIndex, f32)>> {
    match (&query.state, row_distances) {
        (None, _) => Ok(popular(reps, query.k, &query.exclude)
            .into_iter()
            .map(|i| (i, f32::NAN))
            .collect()),
        (Some(q), Some(to_rows)) => {
            let scores = reps.scores_from_row_distances(q, to_rows, query.mode, &query.history)?;
            Ok(reps.top(&scores, query.mode, query.k, &query.exclude))
        }
        (Some(_), None) => Err(Error::invalid(
            "row distances",
            "missing for a non-empty history",
        )),
    }
}

/// [`top_from_row_distances`] from candidate rows instead of every row distance: (row, squared distance)
/// pairs that include the `query.k + query.exclude.len()` nearest rows, e.g. selected on the
/// GPU ([`crate::latent::gpu::GpuScorer::nearest`]). Only for a ranking by row distance alone
/// ([`Representations::ranks_by_row_distance`]); the same items and order as [`top_from_row_distances`].
pub fn top_from_nearest_rows(
    reps: &Representations,
    query: &Query,
    nearest: Vec<(ItemIndex, f32)>,
) -> Result<Vec<(ItemIndex, f32)>> {
    if query.state.is_none() {
        return top_from_row_distances(reps, query, None);
    }
    if !reps.ranks_by_row_distance(query.mode) {
        return Err(Error::invalid(
            "nearest rows",
            format!(
                "mode {:?} with these scoring options does not rank by row distance alone",
                query.mode
            ),
        ));
    }
    Ok(top_k_of(nearest.into_iter(), query.k, &query.exclude)
        .into_iter()
        .map(|(i, d)| (i, reps.display_distance(d, query.mode)))
        .collect())
}

/// Recommendations for a history of catalog items on the CPU: [`prepare`] →
/// [`row_distances`] → [`top_from_row_distances`].
pub fn recommend(
    model: &Model,
    catalog: &Catalog,
    reps: &Representations,
    request: &Request,
) -> Result<Vec<(ItemIndex, f32)>> {
    let query = prepare(model, catalog, reps, request)?;
    let to_rows = row_distances(reps, &query)?;
    top_from_row_distances(reps, &query, to_rows)
}

/// Top-`k` items for a query state of `history` (oldest first, for the follows term);
/// `exclude` items (e.g. the history) are left out.
pub fn rank(
    reps: &Representations,
    query: &[f32],
    mode: Mode,
    k: usize,
    (history, exclude): (&[ItemIndex], &[ItemIndex]),
) -> Result<Vec<(ItemIndex, f32)>> {
    let distances = reps.distances(query, mode, history)?;
    Ok(top_k(&distances, k, exclude))
}
