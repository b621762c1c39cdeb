//! `l2d prepare` and `l2d tokenizer`: a dataset from a raw log, D3 files or MovieLens, and the
//! byte-level BPE tokenizer trained on its titles.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use l2d::data::dataset::{self, Dataset, RawLogSpec};
use l2d::data::prompt::Template;

use super::{PrepareArgs, Source, TokenizerArgs};

pub(super) fn dir_stem(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "dataset".into(), |n| n.to_string_lossy().into_owned())
}

pub fn prepare(args: PrepareArgs) -> Result<()> {
    let dataset = import_source(&args.source)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("target/data").join(&dataset.name));
    dataset
        .write_dir(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Imports a MovieLens directory, a D3 directory or a raw log, printing the import report
/// and the dataset's summary.
pub(super) fn import_source(source: &Source) -> Result<Dataset> {
    let (dataset, from) = if let Some(dir) = &source.d3 {
        let mut dataset = dataset::load_d3_dir(dir)
            .with_context(|| format!("loading D3 directory {}", dir.display()))?;
        if let Some(name) = &source.name {
            dataset.name = name.clone();
        }
        (dataset, dir.clone())
    } else {
        let (spec, from) = source_log(source)?;
        let name = source.name.clone().unwrap_or_else(|| dir_stem(&from));
        let (dataset, report) = dataset::import_raw_log(&spec, &name).with_context(|| {
            format!(
                "importing {} and {}",
                spec.interactions.display(),
                spec.items.display()
            )
        })?;
        println!("{report}");
        (dataset, from)
    };
    println!("{}", dataset.summary());
    println!("imported from {}", from.display());
    Ok(dataset)
}

/// The raw log a source names (MovieLens directory or interactions + items) and the
/// directory it comes from.
pub(super) fn source_log(source: &Source) -> Result<(RawLogSpec, PathBuf)> {
    match (&source.movielens, &source.interactions, &source.items) {
        (Some(dir), _, _) => Ok((RawLogSpec::movielens(dir), dir.clone())),
        (None, Some(interactions), Some(items)) => Ok((
            source.columns.spec(interactions, Some(items)),
            interactions
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        )),
        _ => bail!("give --movielens DIR, --d3 DIR, or --interactions FILE --items FILE"),
    }
}

pub(super) fn parse_template(name: &str, category: &str) -> Result<Template> {
    match name {
        "compact" => Ok(Template::Compact),
        "d3" => Ok(Template::D3 {
            category: category.to_string(),
            end_marker: l2d::data::prompt::EOS.to_string(),
        }),
        other => anyhow::bail!("unknown template `{other}` (expected compact or d3)"),
    }
}

pub fn tokenizer(args: TokenizerArgs) -> Result<()> {
    let dataset = Dataset::read_dir(&args.dataset)
        .with_context(|| format!("reading {}", args.dataset.display()))?;
    let template = parse_template(&args.template, &args.category)?;
    let tokenizer = l2d::data::tokenizer::train_bpe(
        dataset.catalog.items().map(|i| i.title),
        &template,
        args.vocab_size,
    )?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let path = args.out.join("tokenizer.json");
    tokenizer.save(&path)?;
    l2d::model::ModelMeta::new(template).write(&args.out)?;
    let tokens: usize = dataset
        .catalog
        .items()
        .map(|i| tokenizer.encode(i.title).map(|ids| ids.len()))
        .sum::<l2d::Result<usize>>()?;
    println!(
        "wrote {} (vocab {}); catalog titles average {:.2} tokens",
        path.display(),
        tokenizer.vocab_size(),
        tokens as f64 / dataset.catalog.len() as f64
    );
    Ok(())
}
