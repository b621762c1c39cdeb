// Squared-L2 partial distances between queries and the rows of one item-matrix chunk, with
// the rows kept on the GPU in their stored element type (no f32 copy):
//   out[q * rows + r] = ‖r‖² − 2 q·r        (‖q‖² is added on the CPU, as in score.rs)
// `row_distances`: one invocation per (row, query); rows along x, queries along y.
// `select_nearest`: each invocation keeps the `k` smallest of `rows_per_thread` consecutive rows of
// one query (ties by row index), so only candidates are read back: the union of every
// invocation's `k` best holds the chunk's `k` best.

struct Params {
    rows: u32,
    dim: u32,
    queries: u32,
    // 0 = f32, 1 = f16 (two per word), 2 = int8 (four per word; value = offset + q · scale)
    format: u32,
    rows_per_thread: u32,
    k: u32,
    threads: u32,
    _pad: u32,
}

// Largest `k` the selection keeps per invocation (`gpu::MAX_GPU_K`).
const MAX_K: u32 = 64u;
// The largest finite f32 (read back as +∞). A decimal literal would round above it in Tint.
const F32_MAX: f32 = 0x1.fffffep+127f;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> items: array<u32>;
// Per row: ‖r‖² (+∞ for rows that must rank last) and the int8 scale (1 otherwise).
@group(0) @binding(2) var<storage, read> rows_info: array<vec2<f32>>;
// Queries, row-major; then one term per query added to every q·r (int8: q·offset; else 0).
@group(0) @binding(3) var<storage, read> queries: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn row_distances(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let q = gid.y;
    if (row >= params.rows || q >= params.queries) {
        return;
    }
    let base = row * params.dim;
    let qbase = q * params.dim;
    var acc = 0.0;
    if (params.format == 0u) {
        for (var d = 0u; d < params.dim; d = d + 1u) {
            acc = acc + bitcast<f32>(items[base + d]) * queries[qbase + d];
        }
    } else if (params.format == 1u) {
        if ((params.dim & 1u) == 0u) {
            // Rows start on a word: two values per load.
            for (var d = 0u; d < params.dim; d = d + 2u) {
                let pair = unpack2x16float(items[(base + d) >> 1u]);
                acc = acc + pair.x * queries[qbase + d] + pair.y * queries[qbase + d + 1u];
            }
        } else {
            for (var d = 0u; d < params.dim; d = d + 1u) {
                let i = base + d;
                acc = acc + unpack2x16float(items[i >> 1u])[i & 1u] * queries[qbase + d];
            }
        }
    } else {
        var int_acc = 0.0;
        if ((params.dim & 3u) == 0u) {
            // Rows start on a word: four values per load.
            for (var d = 0u; d < params.dim; d = d + 4u) {
                let w = bitcast<i32>(items[(base + d) >> 2u]);
                let v = vec4<f32>(
                    f32(extractBits(w, 0u, 8u)),
                    f32(extractBits(w, 8u, 8u)),
                    f32(extractBits(w, 16u, 8u)),
                    f32(extractBits(w, 24u, 8u)),
                );
                let x = vec4<f32>(
                    queries[qbase + d],
                    queries[qbase + d + 1u],
                    queries[qbase + d + 2u],
                    queries[qbase + d + 3u],
                );
                int_acc = int_acc + dot(v, x);
            }
        } else {
            for (var d = 0u; d < params.dim; d = d + 1u) {
                let i = base + d;
                let v = extractBits(bitcast<i32>(items[i >> 2u]), (i & 3u) * 8u, 8u);
                int_acc = int_acc + f32(v) * queries[qbase + d];
            }
        }
        acc = rows_info[row].y * int_acc;
    }
    acc = acc + queries[params.queries * params.dim + q];
    out[q * params.rows + row] = rows_info[row].x - 2.0 * acc;
}

// (row, distance bits) per kept candidate; row 0xffffffff marks an empty slot.
@group(0) @binding(5) var<storage, read_write> candidates: array<vec2<u32>>;

@compute @workgroup_size(64)
fn select_nearest(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let q = gid.y;
    let p = params;
    if (t >= p.threads || q >= p.queries) {
        return;
    }
    var best_d: array<f32, MAX_K>;
    var best_r: array<u32, MAX_K>;
    var filled = 0u;
    let first = t * p.rows_per_thread;
    let last = min(first + p.rows_per_thread, p.rows);
    for (var r = first; r < last; r = r + 1u) {
        var d = out[q * p.rows + r];
        // +∞ and NaN become the largest finite value (read back as +∞): ranked last, by
        // row, like on the CPU.
        if (!(d < F32_MAX)) {
            d = F32_MAX;
        }
        if (filled == p.k && !(d < best_d[p.k - 1u])) {
            continue;
        }
        // Insert after every kept distance ≤ d: rows arrive in index order, so equal
        // distances stay ordered by row.
        var j = min(filled, p.k - 1u);
        while (j > 0u && best_d[j - 1u] > d) {
            best_d[j] = best_d[j - 1u];
            best_r[j] = best_r[j - 1u];
            j = j - 1u;
        }
        best_d[j] = d;
        best_r[j] = r;
        filled = min(filled + 1u, p.k);
    }
    let base = (q * p.threads + t) * p.k;
    for (var j = 0u; j < p.k; j = j + 1u) {
        if (j < filled) {
            candidates[base + j] = vec2<u32>(best_r[j], bitcast<u32>(best_d[j]));
        } else {
            candidates[base + j] = vec2<u32>(0xffffffffu, 0u);
        }
    }
}
