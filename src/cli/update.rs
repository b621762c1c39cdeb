//! `l2d update`: new interactions and items into a deployed model directory without retraining
//! (the workflow is `l2d::offline::deploy::update`; this prints its report).

use std::time::Instant;

use anyhow::{Context, Result};

use l2d::offline::deploy::UpdatePaths;

use super::progress::Progress;
use super::UpdateArgs;

pub fn update(args: UpdateArgs) -> Result<()> {
    let start = Instant::now();
    let spec = args.columns.spec(&args.interactions, args.items.as_deref());
    let paths = UpdatePaths {
        dataset: &args.dataset,
        model: &args.model,
        memory: &args.memory,
    };
    let mut bar: Option<Progress> = None;
    let report = l2d::offline::deploy::update(
        &paths,
        &spec,
        args.items.is_some(),
        (args.batch, args.budget),
        &mut |done, total| {
            bar.get_or_insert_with(|| Progress::new(total, "samples"))
                .set_position(done)
        },
    )
    .with_context(|| {
        format!(
            "updating {} with {}",
            args.model.display(),
            args.interactions.display()
        )
    })?;
    if let Some(bar) = &mut bar {
        bar.finish();
    }
    println!("{}", report.import);
    let rewritten: Vec<String> = report
        .blobs
        .iter()
        .map(|(path, bytes, fraction)| {
            format!(
                "{} ({:.2} MB, memory fraction {fraction:.4})",
                path.display(),
                *bytes as f64 / 1e6
            )
        })
        .collect();
    println!(
        "appended {} states ({:.0} samples/s) to {} ({} states); rewrote {} and the manifest \
         and removed {} stale items part(s) in {:.1} s",
        report.appended,
        report.samples_per_second,
        args.memory.display(),
        report.states,
        rewritten.join(", "),
        report.removed_parts,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
