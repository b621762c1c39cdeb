//! The dataset readers on arbitrary bytes: the first byte picks the D3 test-split CSV (with a
//! small catalog), the raw-log interactions CSV or the raw-log items CSV (MovieLens layout,
//! the other file fixed). Never panics; errors are values.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("l2d-fuzz-{}", std::process::id()));
    match selector % 3 {
        0 => {
            let _ = std::fs::create_dir_all(dir.join("info"));
            let _ = std::fs::create_dir_all(dir.join("test"));
            let _ = std::fs::write(dir.join("info/i.txt"), "A, \"x\"\t0\nB\t1\n<a_1>\tC\t2\n");
            let _ = std::fs::write(dir.join("test/t.csv"), data);
            let _ = l2d::data::dataset::load_d3_dir(&dir);
        }
        which => {
            let _ = std::fs::create_dir_all(&dir);
            let movies = b"movieId,title,genres\n1,\"A, The (1999)\",x\n2,B (2000),y\n";
            let ratings = b"userId,movieId,rating,timestamp\n1,1,5,10\n1,2,4,20\n";
            let (r, m): (&[u8], &[u8]) = if which == 1 {
                (data, movies)
            } else {
                (ratings, data)
            };
            let _ = std::fs::write(dir.join("ratings.csv"), r);
            let _ = std::fs::write(dir.join("movies.csv"), m);
            let _ = l2d::data::dataset::import_raw_log(&l2d::data::dataset::RawLogSpec::movielens(&dir), "f");
        }
    }
});
