// Squared-L2 partial distances between queries and the rows of one item-matrix chunk:
//   out[q * rows + r] = ‖r‖² − 2 q·r        (‖q‖² is added on the CPU, as in score.rs)
// One invocation per (row, query); rows along x, queries along y.

struct Params {
    rows: u32,
    dim: u32,
    queries: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> items: array<f32>;
@group(0) @binding(2) var<storage, read> norms: array<f32>;
@group(0) @binding(3) var<storage, read> queries: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let q = gid.y;
    if (row >= params.rows || q >= params.queries) {
        return;
    }
    let base = row * params.dim;
    let qbase = q * params.dim;
    var acc = 0.0;
    for (var d = 0u; d < params.dim; d = d + 1u) {
        acc = acc + items[base + d] * queries[qbase + d];
    }
    out[q * params.rows + row] = norms[row] - 2.0 * acc;
}
