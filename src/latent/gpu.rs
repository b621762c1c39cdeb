//! GPU scoring with wgpu (WebGPU in the browser, Vulkan/lavapipe or others natively): the
//! squared-L2 distances of one or more queries to every row of an item matrix, computed by the
//! compute shader in `gpu.wgsl`.
//!
//! The rows stay on the GPU in their stored element type (f32, f16, or int8 with per-row scales
//! and the per-dimension offset), dequantized in the shader, so uploading makes no f32 copy of
//! the matrix. They are uploaded once, in chunks that respect the device's storage-binding and
//! buffer limits. [`GpuScorer::distances`] reads every distance back (L2D-L and density
//! aggregate them on the CPU); [`GpuScorer::nearest`] selects on the GPU — each invocation
//! keeps the `k` best of [`ROWS_PER_THREAD`] rows — and reads back only those candidates, for
//! rankings by row distance alone (L2D-G). Every chunk is dispatched in one submission and
//! awaited once. Results equal the CPU scorer's up to float rounding; invalid rows score +∞
//! as there.

use std::borrow::Cow;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::kernel::dot;
use crate::latent::score::{ItemMatrix, RowData};

/// Largest `k` [`GpuScorer::nearest`] selects on the GPU (`MAX_K` in `gpu.wgsl`).
pub const MAX_GPU_K: usize = 64;
/// Rows one selecting invocation scans: candidates read back = rows / this × k.
pub const ROWS_PER_THREAD: usize = 512;
const WORKGROUP: usize = 64;
/// Queries per dispatch; more are scored in groups (bounds the distance buffers).
const MAX_QUERIES: usize = 16;

struct Chunk {
    first_row: usize,
    rows: usize,
    /// The rows' bytes in their stored type (padded to whole words).
    items: wgpu::Buffer,
    /// Per row: squared norm (+∞ for an invalid row), int8 scale.
    rows_info: wgpu::Buffer,
}

/// An item matrix resident on a GPU.
pub struct GpuScorer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    distances: wgpu::ComputePipeline,
    select: wgpu::ComputePipeline,
    chunks: Vec<Chunk>,
    dim: usize,
    rows: usize,
    /// `format` of `gpu.wgsl`: 0 = f32, 1 = f16, 2 = int8.
    format: u32,
    /// The int8 rows' per-dimension offset (each query's `q·offset` is added in the shader).
    offset: Option<Vec<f32>>,
    /// Adapter name and backend, for reporting which device ran.
    pub adapter: String,
    /// A software adapter (the device type is a CPU: SwiftShader, lavapipe, a browser's
    /// fallback adapter). The wasm CPU path beats it (`www/bench.html`), so `auto` skips it.
    pub software: bool,
}

fn gpu_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid("gpu", format!("{context}: {e}"))
}

/// The `format` code of `gpu.wgsl` for rows stored as `data`, and the bytes of one value.
fn format_of(data: &RowData) -> (u32, usize) {
    match data {
        RowData::F32(_) => (0, 4),
        RowData::F16(_) => (1, 2),
        RowData::I8 { .. } | RowData::I4 { .. } => (2, 1),
    }
}

/// The bytes of rows `first..first + rows` as the shader reads them: as they are stored (no
/// conversion, no copy), int4 rows unpacked to int8.
fn stored_rows(data: &RowData, dim: usize, first: usize, rows: usize) -> Cow<'_, [u8]> {
    let range = first * dim..(first + rows) * dim;
    Cow::Borrowed(match data {
        RowData::F32(v) => bytemuck::cast_slice(&v[range]),
        RowData::F16(v) => bytemuck::cast_slice(&v[range]),
        RowData::I8 { .. } | RowData::I4 { .. } => {
            return match data
                .integers(first..first + rows, dim)
                .expect("integer rows")
            {
                Cow::Borrowed(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
                Cow::Owned(v) => Cow::Owned(v.into_iter().map(|x| x as u8).collect()),
            };
        }
    })
}

impl GpuScorer {
    /// Requests an adapter and device and uploads `matrix`. `Ok(None)` when no adapter exists
    /// (no WebGPU in this browser, no Vulkan driver): callers fall back to the CPU scorer.
    pub async fn new(matrix: &ItemMatrix) -> Result<Option<Self>> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let Ok(adapter) = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
        else {
            return Ok(None);
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("l2d"),
                required_limits: wgpu::Limits {
                    max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                    max_buffer_size: limits.max_buffer_size,
                    ..wgpu::Limits::downlevel_defaults()
                },
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_err("request_device", e))?;
        // WebGPU reports a shader or pipeline error asynchronously (a console warning, then
        // dispatches that do nothing): caught here, it is an error the caller sees.
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("gpu.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("gpu.wgsl").into()),
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let (distances, select) = (pipeline("row_distances"), pipeline("select_nearest"));
        if let Some(e) = scope.pop().await {
            return Err(gpu_err("gpu.wgsl", e));
        }
        let dim = matrix.dim();
        let (format, value_bytes) = format_of(matrix.data());
        let bytes_per_row = (value_bytes * dim) as u64;
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        // A chunk's rows, and its distances for a group of queries, each fit one binding.
        let rows_per_chunk = ((max_binding / bytes_per_row.max(4 * MAX_QUERIES as u64)) as usize)
            .min(limits.max_compute_workgroups_per_dimension as usize * WORKGROUP)
            .max(1);
        let scales = matrix.data().scales();
        let norms = matrix.norms();
        let valid = matrix.valid();
        let mut chunks = Vec::new();
        let mut first_row = 0;
        while first_row < matrix.rows() {
            let rows = rows_per_chunk.min(matrix.rows() - first_row);
            // In blocks of rows (a multiple of 4 bytes each): int4 rows are unpacked a block
            // at a time, never a whole chunk.
            let block = 1024 * wgpu::COPY_BUFFER_ALIGNMENT as usize;
            let blocks = (first_row..first_row + rows).step_by(block).map(|first| {
                stored_rows(
                    matrix.data(),
                    dim,
                    first,
                    block.min(first_row + rows - first),
                )
            });
            let len = rows * dim * value_bytes;
            let items = upload_parts(&device, &queue, "items", len, blocks);
            let info: Vec<[f32; 2]> = (first_row..first_row + rows)
                .map(|r| {
                    let norm = if valid[r] { norms[r] } else { f32::INFINITY };
                    [norm, scales.map_or(1.0, |s| s[r])]
                })
                .collect();
            let rows_info = upload(&device, &queue, "rows", bytemuck::cast_slice(&info));
            chunks.push(Chunk {
                first_row,
                rows,
                items,
                rows_info,
            });
            first_row += rows;
        }
        let offset = matrix.data().offset().map(<[f32]>::to_vec);
        Ok(Some(GpuScorer {
            device,
            queue,
            distances,
            select,
            chunks,
            dim,
            rows: matrix.rows(),
            format,
            offset,
            adapter: format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type),
            software: info.device_type == wgpu::DeviceType::Cpu,
        }))
    }

    fn check(&self, queries: &[Vec<f32>]) -> Result<()> {
        match queries.iter().find(|q| q.len() != self.dim) {
            Some(q) => Err(Error::mismatch("query dimension", self.dim, q.len())),
            None => Ok(()),
        }
    }

    /// The queries, then each one's term added to every `q·r` (`q·offset` for centred int8).
    fn query_buffer(&self, queries: &[Vec<f32>]) -> wgpu::Buffer {
        let mut flat: Vec<f32> = queries.iter().flatten().copied().collect();
        flat.extend(
            queries
                .iter()
                .map(|q| self.offset.as_ref().map_or(0.0, |o| dot(q, o))),
        );
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("queries"),
                contents: bytemuck::cast_slice(&flat),
                usage: wgpu::BufferUsages::STORAGE,
            })
    }

    /// Records the distance pass of `chunk` for `queries` queries; returns its output buffer
    /// (`queries × rows` partial distances) and the uniform it used.
    fn encode_distances(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
        query_buf: &wgpu::Buffer,
        queries: usize,
        k: usize,
    ) -> (wgpu::Buffer, wgpu::Buffer) {
        let threads = chunk.rows.div_ceil(ROWS_PER_THREAD);
        let params = [
            chunk.rows as u32,
            self.dim as u32,
            queries as u32,
            self.format,
            ROWS_PER_THREAD as u32,
            k as u32,
            threads as u32,
            0,
        ];
        let params_buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::cast_slice(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let out = self.output_buffer("distances", chunk.rows * queries * 4);
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.distances.get_bind_group_layout(0),
            entries: &[
                entry(0, &params_buf),
                entry(1, &chunk.items),
                entry(2, &chunk.rows_info),
                entry(3, query_buf),
                entry(4, &out),
            ],
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&self.distances);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(chunk.rows.div_ceil(WORKGROUP) as u32, queries as u32, 1);
        drop(pass);
        (out, params_buf)
    }

    /// Records every chunk's distance pass for `queries` and what `then` adds after it
    /// (returning the buffer to read back: the distances themselves, or what a later pass made
    /// of them), submits once and reads every chunk's buffer back after one wait.
    async fn run(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        mut then: impl FnMut(
            &mut wgpu::CommandEncoder,
            &Chunk,
            wgpu::Buffer,
            &wgpu::Buffer,
        ) -> wgpu::Buffer,
    ) -> Result<Vec<(&Chunk, Vec<f32>)>> {
        let query_buf = self.query_buffer(queries);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        let mut staged = Vec::new();
        for chunk in &self.chunks {
            let (partial, params) =
                self.encode_distances(&mut encoder, chunk, &query_buf, queries.len(), k);
            let result = then(&mut encoder, chunk, partial, &params);
            staged.push(self.staging(&mut encoder, &result));
        }
        self.queue.submit([encoder.finish()]);
        let views = self.read_all(staged.iter().collect()).await?;
        Ok(self.chunks.iter().zip(views).collect())
    }

    /// Squared distances of each query to every row (+∞ for invalid rows), like
    /// [`ItemMatrix::distances`].
    pub async fn distances(&self, queries: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        self.check(queries)?;
        let mut out = vec![vec![0f32; self.rows]; queries.len()];
        for (group, group_out) in queries.chunks(MAX_QUERIES).zip(out.chunks_mut(MAX_QUERIES)) {
            let read = self.run(group, 1, |_, _, partial, _| partial).await?;
            for (chunk, partial) in read {
                for (q, (query, dst)) in group.iter().zip(group_out.iter_mut()).enumerate() {
                    let q_norm = dot(query, query);
                    let dst = &mut dst[chunk.first_row..chunk.first_row + chunk.rows];
                    for (d, &p) in dst
                        .iter_mut()
                        .zip(&partial[q * chunk.rows..(q + 1) * chunk.rows])
                    {
                        *d = (q_norm + p).max(0.0);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Candidates for the `k` rows nearest to `query`: (row, squared distance) pairs, a
    /// superset of the `k` nearest (ties by row; invalid rows at +∞, last), selected on the GPU
    /// so only about `rows / ROWS_PER_THREAD × k` pairs are read back; rank them with
    /// [`crate::latent::score::top_k_of`]. `None` when `k` exceeds [`MAX_GPU_K`] (use
    /// [`GpuScorer::distances`]).
    pub async fn nearest(&self, query: &[f32], k: usize) -> Result<Option<Vec<(u32, f32)>>> {
        let queries = [query.to_vec()];
        self.check(&queries)?;
        if k > MAX_GPU_K {
            return Ok(None);
        }
        let k = k.min(self.rows);
        if k == 0 {
            return Ok(Some(Vec::new()));
        }
        let select = |encoder: &mut wgpu::CommandEncoder,
                      chunk: &Chunk,
                      partial: wgpu::Buffer,
                      params: &wgpu::Buffer| {
            let threads = chunk.rows.div_ceil(ROWS_PER_THREAD);
            let candidates = self.output_buffer("candidates", threads * k * 8);
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &self.select.get_bind_group_layout(0),
                entries: &[entry(0, params), entry(4, &partial), entry(5, &candidates)],
            });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&self.select);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(threads.div_ceil(WORKGROUP) as u32, 1, 1);
            drop(pass);
            candidates
        };
        let read = self.run(&queries, k, select).await?;
        let q_norm = dot(query, query);
        let mut out = Vec::new();
        for (chunk, words) in read {
            let words: &[u32] = bytemuck::cast_slice(&words);
            for pair in words.chunks_exact(2) {
                if pair[0] != u32::MAX {
                    let p = f32::from_bits(pair[1]);
                    let d = if p >= f32::MAX {
                        f32::INFINITY
                    } else {
                        (q_norm + p).max(0.0)
                    };
                    out.push(((chunk.first_row as u32) + pair[0], d));
                }
            }
        }
        Ok(Some(out))
    }

    /// A buffer of `bytes` a shader writes and a copy reads.
    fn output_buffer(&self, label: &str, bytes: usize) -> wgpu::Buffer {
        self.buffer(
            label,
            bytes as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        )
    }

    fn buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// A mappable copy of `buffer`, recorded in `encoder`.
    fn staging(&self, encoder: &mut wgpu::CommandEncoder, buffer: &wgpu::Buffer) -> wgpu::Buffer {
        let staging = self.buffer(
            "readback",
            buffer.size(),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, buffer.size());
        staging
    }

    /// Maps every staging buffer of one submission, waits once, and copies them out as f32
    /// words.
    async fn read_all(&self, buffers: Vec<&wgpu::Buffer>) -> Result<Vec<Vec<f32>>> {
        let receivers: Vec<_> = buffers
            .iter()
            .map(|b| {
                let (sender, receiver) = futures_channel::oneshot::channel();
                b.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                    let _ = sender.send(r);
                });
                receiver
            })
            .collect();
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu_err("poll", e))?;
        let mut out = Vec::with_capacity(buffers.len());
        for (buffer, receiver) in buffers.into_iter().zip(receivers) {
            receiver
                .await
                .map_err(|e| gpu_err("readback", e))?
                .map_err(|e| gpu_err("map", e))?;
            {
                let view = buffer
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| gpu_err("mapped range", e))?;
                out.push(bytemuck::cast_slice::<u8, f32>(&view).to_vec());
            }
            buffer.unmap();
        }
        Ok(out)
    }
}

/// A storage buffer holding `bytes` (zero-padded to whole words), written through the queue:
/// in the browser a mapped-at-creation buffer is staged in a wasm-side copy of its size (wasm
/// memory never shrinks), while `write_buffer` hands WebGPU a view of the bytes where they lie.
fn upload(device: &wgpu::Device, queue: &wgpu::Queue, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    upload_parts(device, queue, label, bytes.len(), [Cow::Borrowed(bytes)])
}

/// A storage buffer of `len` bytes written from `parts` in order (each but the last a
/// multiple of 4 bytes long), so a caller that converts its data can hand it over a block at a
/// time instead of holding all of it converted.
fn upload_parts<'a>(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    label: &str,
    len: usize,
    parts: impl IntoIterator<Item = Cow<'a, [u8]>>,
) -> wgpu::Buffer {
    let align = wgpu::COPY_BUFFER_ALIGNMENT as usize;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: len.div_ceil(align).max(1) as u64 * align as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut at = 0;
    for bytes in parts {
        debug_assert!(at % align == 0, "every part but the last is aligned");
        let whole = bytes.len() / align * align;
        if whole > 0 {
            queue.write_buffer(&buffer, at as u64, &bytes[..whole]);
        }
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            queue.write_buffer(&buffer, (at + whole) as u64, &tail[..align]);
        }
        at += bytes.len();
    }
    buffer
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}
